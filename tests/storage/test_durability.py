"""Nothing acknowledged is lost: the database is killed with SIGKILL right after the last
acknowledged write, restarted on its files, and every acknowledged write is there (the client's
write concern asks for the journal, `storage.database.WRITE_CONCERN_W` and `_JOURNAL`)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from storage.bulk import insert_new
from storage.database import connect
from storage.embedded import start_embedded
from tests.conftest import START

WRITES = 300


async def test_acknowledged_writes_survive_a_kill_9(tmp_path: Path) -> None:
    server = await start_embedded(tmp_path, storage_path=str(tmp_path / "db"))
    database = connect(server.uri, "durability")
    acknowledged = 0
    try:
        deliveries = database["delivery_log"]
        ledger = database["points_ledger"]

        async def one(n: int) -> None:
            nonlocal acknowledged
            if n % 2:
                await insert_new(deliveries, [{"_id": f"d{n}", "shop_id": "shp_1", "sent_at": START}])
            else:
                await ledger.insert_one({"_id": f"l{n}", "shop_id": "shp_1", "amount": n, "at": START})
            acknowledged += 1

        await asyncio.gather(*(one(n) for n in range(WRITES)))
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)  # at once after the last acknowledgement
        await server.process.wait()
    finally:
        await database.close()
    restarted = await start_embedded(tmp_path, storage_path=str(tmp_path / "db"))
    database = connect(restarted.uri, "durability")
    try:
        stored = (await database["delivery_log"].count_documents({})
                  + await database["points_ledger"].count_documents({}))
    finally:
        await database.close()
        await restarted.stop()
    print(f"acknowledged {acknowledged}, stored after kill -9: {stored}")
    assert stored == acknowledged == WRITES
