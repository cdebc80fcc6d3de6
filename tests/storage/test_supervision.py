"""The embedded database is supervised: killed with SIGKILL, it is restarted on the same files
(bounded back-off), /healthz says 503 meanwhile, and everything resumes without an operator.
SIGTERM stops the web process (and its database) within a few seconds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

from bot.app import create_app
from storage.embedded import free_port
from tests.conftest import OPERATOR_TOKEN, AppServer

ROOT = Path(__file__).resolve().parents[2]


async def wait_for_status(client: TestClient[Any, Any], status: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if (await client.get("/healthz")).status == status:
            return
        assert time.monotonic() < deadline, f"/healthz never answered {status}"
        await asyncio.sleep(0.05)


async def test_a_killed_embedded_database_is_restarted_on_its_files(settings: Any, clock: Any, tmp_path: Path) -> None:
    embedded = settings.model_copy(update={"mongodb_uri": None, "data_dir": tmp_path / "data"})
    client = TestClient(AppServer(create_app(embedded, clock=clock)))
    await client.start_server()
    try:
        created = await client.post("/admin/api/v1/shops", json={"name": "監視", "channel_secret": "s" * 32,
                                                                 "channel_access_token": "t"},
                                    headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        shop = await created.json()
        for kill in range(2):  # twice: the supervisor keeps watching the restarted server
            record = json.loads((tmp_path / "data" / "embedded-db.json").read_text())
            os.kill(int(record["pid"]), signal.SIGKILL)
            await wait_for_status(client, 503)  # down: said at once
            await wait_for_status(client, 200)  # restarted, reconnected, no operator
            for _ in range(100):  # the record is rewritten just after the port opens
                again = json.loads((tmp_path / "data" / "embedded-db.json").read_text())
                if again["pid"] != record["pid"]:
                    break
                await asyncio.sleep(0.05)
            assert again["port"] == record["port"] and again["pid"] != record["pid"], kill
            response = await client.get(f"/admin/api/v1/shops/{shop['shop_id']}",
                                        headers={"Authorization": f"Bearer {shop['api_key']}"})
            assert response.status == 200 and (await response.json())["name"] == "監視"  # same files
    finally:
        await client.close()
    assert not (tmp_path / "data" / "embedded-db.json").exists(), "stopped for good on shutdown, not restarted"


async def test_sigterm_stops_the_web_process_within_seconds(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"}
    env.pop("MONGODB_URI", None)
    process = subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=env,  # noqa: ASYNC220 - a real child
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "the web process did not come up"
                await asyncio.sleep(0.2)
        db_pid = int(json.loads((tmp_path / "data" / "embedded-db.json").read_text())["pid"])
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 15)  # a hang would fail here, not a slow machine
        assert code == 0
        await asyncio.sleep(0.2)
        assert not Path(f"/proc/{db_pid}").exists() or "Z" in Path(f"/proc/{db_pid}/stat").read_text().split()[2]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
