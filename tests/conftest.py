"""Shared fixtures: one real SecantusDB server per test session (a fresh database per
test), the LINE simulator, the app under test, and an injected clock."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner
from pydantic import SecretStr

from bot.app import create_app
from core.clock import FixedClock
from core.settings import Settings
from storage.embedded import free_port, server_command

OPERATOR_TOKEN = "operator-test-token"
# 10:00 in Tokyo. Far in the future on purpose: TTL indexes purge by the database
# server's real clock, so times from the test clock must never be in the real past.
# 2037 has the same calendar (weekdays, DST dates) as 2026, where the scenarios were written.
START = datetime(2037, 12, 1, 1, 0, tzinfo=UTC)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"secantusd-py exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("secantusd-py did not start")


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real SecantusDB server for the whole session (test commands on, for fail points)."""
    path = tmp_path_factory.mktemp("secantus")
    port = free_port()
    log = open(path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [*server_command(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(path / "db"),
         "--enable-test-commands", "--log-level", "WARNING"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
async def linesim_server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    from linesim.app import create_app as create_linesim

    return await aiohttp_server(create_linesim())


@pytest.fixture
def linesim_url(linesim_server: TestServer) -> str:
    return str(linesim_server.make_url("")).rstrip("/")


@pytest.fixture
def settings(mongo_uri: str, linesim_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database on the session server, LINE = linesim."""
    return Settings(
        mongodb_uri=mongo_uri,
        mongodb_db="t_" + secrets.token_hex(6),
        data_dir=tmp_path / "data",
        line_api_base=linesim_url,
        line_data_api_base=linesim_url,
        line_login_base=linesim_url,
        operator_token=SecretStr(OPERATOR_TOKEN),
        public_base_url="http://shop-bot.test",
        line_timeout_seconds=5,
    )


class AppServer(TestServer):
    """The app served as `python -m bot` serves it (`web.run_app`): a request whose client went away still runs
    to its end. aiohttp's test server cancels it instead, which production never does."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        kwargs["handler_cancellation"] = False
        return await super()._make_runner(**kwargs)


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], settings: Settings, clock: FixedClock
) -> TestClient[Any, Any]:
    """The real app, started (database connected, indexes made) and served on a real socket."""
    return await aiohttp_client(AppServer(create_app(settings, clock=clock)))


@dataclass
class ShopHandle:
    shop_id: str
    api_key: str
    channel_secret: str
    channel_access_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def make_shop(client: TestClient[Any, Any]) -> Callable[..., Awaitable[ShopHandle]]:
    async def make(**fields: Any) -> ShopHandle:
        body = {
            "name": "テストショップ",
            "channel_secret": secrets.token_hex(16),
            "channel_access_token": "tok-" + secrets.token_urlsafe(24),
            **fields,
        }
        response = await client.post(
            "/admin/api/v1/shops", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
        assert response.status == 201, await response.text()
        data = await response.json()
        return ShopHandle(data["shop_id"], data["api_key"], body["channel_secret"], body["channel_access_token"])

    return make
