"""Fixtures for the bot tests: a shop, linesim as the LINE Platform, and a way to wait for handling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.typedefs import CLOCK, DATABASE, LINE, SETTINGS, WEBHOOK_CLOSER, WEBHOOK_PIPELINE
from bot.webhook import recover_expired
from linesim.client import SimClient
from storage.database import Database
from tests.conftest import ShopHandle

USER = "U" + "1" * 32


async def settle(app: web.Application) -> None:
    """Wait until the webhook's handling pipeline has handled everything acknowledged so far, and the stored
    batches it handled are closed."""
    await app[WEBHOOK_PIPELINE].idle()
    await app[WEBHOOK_CLOSER].idle()


async def recover(app: web.Application) -> int:
    """One recovery sweep of the app's stored webhook events, as the recovery loop runs it; events handled."""
    return await recover_expired(app[DATABASE], app[LINE], app[SETTINGS], app[CLOCK].now)


@pytest.fixture
async def sim(linesim_url: str) -> AsyncIterator[SimClient]:
    async with SimClient(linesim_url) as client:
        yield client


@pytest.fixture
async def shop(make_shop: Callable[..., Awaitable[ShopHandle]]) -> ShopHandle:
    return await make_shop()


@pytest.fixture
def db(client: TestClient[web.Request, web.Application]) -> Database:
    return client.app[DATABASE]


@pytest.fixture
def bot_url(client: TestClient[Any, Any], shop: ShopHandle) -> str:
    return str(client.make_url("/webhook/" + shop.shop_id))


@pytest.fixture
def play(client: TestClient[Any, Any], sim: SimClient, shop: ShopHandle, bot_url: str
         ) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Play a LINE user: linesim signs and posts the events; then wait until the bot handled them."""

    async def send(*events: dict[str, Any], redeliver: list[str] | None = None) -> dict[str, Any]:
        answer = await sim.webhook(bot_url, shop.channel_secret, events=list(events) or None, redeliver=redeliver)
        await settle(client.app)
        return answer

    return send
