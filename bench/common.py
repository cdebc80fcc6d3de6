"""What every benchmark needs: a MongoDB for one run, cleaned up afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import tempfile
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from storage.database import connect
from storage.embedded import start_embedded


@contextlib.asynccontextmanager
async def bench_database(prefix: str) -> AsyncIterator[tuple[str, str]]:
    """(uri, database name): `MONGODB_URI` if set, else a fresh embedded server; the database is dropped after."""
    uri = os.environ.get("MONGODB_URI")
    db_name = f"{prefix}_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        server = None if uri else await start_embedded(Path(tmp))
        if server is not None:
            uri = server.uri
        assert uri is not None
        try:
            yield uri, db_name
        finally:
            database = connect(uri, db_name)
            with contextlib.suppress(Exception):
                await database.client.drop_database(db_name)
            await database.close()
            if server is not None:
                await server.stop()


def run(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run`, but SIGTERM (e.g. from `timeout`) cancels the benchmark so its clean-up still runs and
    no embedded database server is left behind."""

    async def guarded() -> None:
        task = asyncio.ensure_future(main)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(guarded())
