"""Acknowledged means stored: kill -9 the database server while webhooks are answered 200 and browser events
204, restart it on the same files, and every acknowledged event is there. While it is down both endpoints
answer 503 (LINE redelivers, the script's next beacon retries) instead of hanging, and they recover by
themselves when it is back. Also: plain acknowledged writes (the client's write concern asks for the journal,
`storage.database.WRITE_CONCERN_W` and `_JOURNAL`) survive a kill -9 right after the last one."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.webhook import signature_for
from core.clock import FixedClock
from core.settings import Settings
from linesim import webhook as events
from storage.bulk import insert_new
from storage.database import connect
from storage.embedded import free_port, server_command, start_embedded
from tests.conftest import OPERATOR_TOKEN, START, AppServer, _wait_for_port

ORIGIN = "https://shop.example"
SAFETY_SECONDS = 60  # only so a hang fails the test; not a latency budget
KILLS = 3
ACKS_BEFORE_A_KILL = 60
WRITES = 300


class Server:
    """A SecantusDB server on a fixed port and directory, so it can be killed and started again in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*server_command(), "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.path),
             "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        _wait_for_port(self.port, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown, no checkpoint
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


@dataclass
class Running:
    server: Server
    client: TestClient[Any, Any]
    shop_id: str
    secret: str


@pytest.fixture
async def running(settings: Settings, clock: FixedClock, tmp_path: Path) -> AsyncIterator[Running]:
    """The app on its own database server (the test kills it), with a shop that takes browser events."""
    server = Server(tmp_path / "db")
    await asyncio.to_thread(server.start)
    client = TestClient(AppServer(create_app(settings.model_copy(update={"mongodb_uri": server.uri}), clock=clock)))
    try:
        await client.start_server()
        secret = secrets.token_hex(16)
        created = await client.post("/admin/api/v1/shops", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                                    json={"name": "耐久ショップ", "channel_secret": secret, "channel_access_token": "t"})
        shop = await created.json()
        response = await client.put(f"/admin/api/v1/shops/{shop['shop_id']}/settings/tracking",
                                    json={"allowed_origins": [ORIGIN]},
                                    headers={"Authorization": f"Bearer {shop['api_key']}"})
        assert response.status == 200
        yield Running(server, client, shop["shop_id"], secret)
    finally:
        await client.close()
        await asyncio.to_thread(server.stop)


Send = Callable[[Running, list[str]], Awaitable[int]]


async def _webhook(running: Running, event_ids: list[str]) -> int:
    batch = [events.text_message_event("U" + secrets.token_hex(16), "こんにちは") for _ in event_ids]
    for event, event_id in zip(batch, event_ids, strict=True):
        event["webhookEventId"] = event_id
    body = events.webhook_body(batch)
    response = await running.client.post(f"/webhook/{running.shop_id}", data=body, headers={
        "Content-Type": "application/json", "x-line-signature": signature_for(body, running.secret)})
    return response.status


async def _browser_events(running: Running, event_ids: list[str]) -> int:
    browser = secrets.token_urlsafe(16)
    body = [{"event_id": event_id, "browser_id": browser, "type": "page_view", "url": f"{ORIGIN}/products/p1",
             "product_id": "p1"} for event_id in event_ids]
    response = await running.client.post(f"/t/{running.shop_id}/events", data=json.dumps(body),
                                         headers={"Origin": ORIGIN, "Content-Type": "text/plain"})
    return response.status


async def _stream_then_kill(running: Running, send: Send, ok: int, acknowledged: list[str]) -> None:
    """Many senders acknowledging events; the kill lands in the middle of the stream."""
    killed = asyncio.Event()
    target = len(acknowledged) + ACKS_BEFORE_A_KILL

    async def sender() -> None:
        while not killed.is_set():
            ids = [secrets.token_hex(12) for _ in range(1 + secrets.randbelow(3))]
            try:
                status = await send(running, ids)
            except Exception:  # noqa: BLE001, S112 - the database died under this request: not acknowledged
                continue
            if status == ok:
                acknowledged.extend(ids)

    senders = [asyncio.ensure_future(sender()) for _ in range(24)]
    while len(acknowledged) < target:
        await asyncio.sleep(0.002)
    running.server.kill()
    killed.set()
    await asyncio.wait_for(asyncio.gather(*senders), SAFETY_SECONDS)


@pytest.mark.parametrize("endpoint", ["webhook", "browser_events"])
async def test_every_acknowledged_event_survives_kill_9_of_the_database(
    running: Running, settings: Settings, endpoint: str
) -> None:
    send, ok, collection, field = ((_webhook, 200, "webhook_batches", "keys") if endpoint == "webhook"
                                   else (_browser_events, 204, "tracking_batches", "keys"))
    acknowledged: list[str] = []
    for _ in range(KILLS):
        await _stream_then_kill(running, send, ok, acknowledged)
        # While it is down: 503, nothing acknowledged.
        assert await asyncio.wait_for(send(running, [secrets.token_hex(12)]), SAFETY_SECONDS) == 503
        await asyncio.to_thread(running.server.start)  # back on the same files and port
        for _ in range(500):  # the app finds it again by itself
            probe = [secrets.token_hex(12)]
            if await asyncio.wait_for(send(running, probe), SAFETY_SECONDS) == ok:
                acknowledged.extend(probe)
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the app did not recover after the database came back")

    database = connect(running.server.uri, settings.mongodb_db)
    try:
        keys = [f"{running.shop_id}:{event_id}" for event_id in acknowledged]
        stored = 0
        for key in keys:
            stored += await database[collection].count_documents({field: key})
        assert stored == len(acknowledged)
    finally:
        await database.close()


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
