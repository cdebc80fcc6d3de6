"""Helpers for points scenarios: a shop whose customers follow through the webhook, points posted through the
admin API, the worker's jobs run with the app's own resources at an injected moment, LINE played by linesim."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.postback import build
from bot.typedefs import DATABASE, LINE, SETTINGS
from core.clock import FixedClock
from delivery.context import JobContext, JobSummary
from linesim.client import SimClient
from scheduler.jobs import run_due_jobs
from storage.database import Database
from storage.keys import customer_key
from tests.bot.conftest import settle
from tests.conftest import ShopHandle
from tests.flex_helpers import flex_texts

SHOP_URL = "https://shop.example.jp/"


@dataclass
class World:
    """One shop, and verbs for a points scenario."""

    client: TestClient[Any, Any]
    shop: ShopHandle
    clock: FixedClock
    sim: SimClient

    @property
    def db(self) -> Database:
        database: Database = self.client.app[DATABASE]
        return database

    @property
    def base(self) -> str:
        return f"/admin/api/v1/shops/{self.shop.shop_id}"

    async def admin(self, method: str, path: str, body: Any = None, status: int | None = None,
                    params: dict[str, str] | None = None) -> Any:
        response = await self.client.request(method, self.base + path, json=body, params=params,
                                             headers=self.shop.auth)
        if status is not None:
            assert response.status == status, await response.text()
        else:
            assert response.status < 300, await response.text()
        return await response.json()

    async def settings(self, **fields: Any) -> None:
        await self.admin("PUT", "/settings/points", {"quiet_hours": {"enabled": False}, **fields})

    async def play(self, *events: dict[str, Any]) -> None:
        """A LINE user acts (linesim signs and posts the events); returns once the bot handled them."""
        url = str(self.client.make_url("/webhook/" + self.shop.shop_id))
        await self.sim.webhook(url, self.shop.channel_secret, events=list(events))
        await settle(self.client.app)

    async def follow(self, *users: str) -> None:
        await self.play(*({"type": "follow", "user_id": user} for user in users))

    async def say(self, user: str, text: str) -> None:
        await self.play({"type": "text", "user_id": user, "text": text})

    async def post(self, user: str, transaction_id: str, kind: str, amount: int, *, at: datetime | None = None,
                   expires_at: datetime | None = None, status: int | None = None) -> Any:
        """A points transaction through the admin API (at the clock's moment unless `at`)."""
        if at is not None:
            self.clock.set(at)
        body: dict[str, Any] = {"transaction_id": transaction_id, "line_user_id": user, "type": kind, "amount": amount}
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        return await self.admin("POST", "/points/transactions", body, status=status)

    async def earn(self, user: str, transaction_id: str, amount: int, expires_at: datetime | None = None,
                   at: datetime | None = None) -> Any:
        return await self.post(user, transaction_id, "earn", amount, at=at, expires_at=expires_at)

    async def run(self, at: datetime, shop: bool = False) -> dict[str, JobSummary]:
        """Every worker job due at `at`, as one tick of the worker (the outbox, points, delivery)."""
        self.clock.set(at)
        app = self.client.app
        ctx = JobContext(database=app[DATABASE], line=app[LINE], settings=app[SETTINGS], worker_id="test")
        return await run_due_jobs(ctx, at, self.shop.shop_id if shop else None)

    async def pushes(self, user: str | None = None) -> list[dict[str, Any]]:
        return await self.sim.messages(to=user, kind="push")

    async def notices(self, user: str | None = None) -> list[tuple[str, str]]:
        """(to, altText) of every push, oldest first."""
        return [(p["to"], p["messages"][0]["altText"]) for p in await self.pushes(user)]

    async def lookup(self, user: str) -> dict[str, Any]:
        """What the customer sees after tapping "ポイント確認" (the bot's answer as LINE got it)."""
        await self.play({"type": "postback", "user_id": user, "data": build("points")})
        sent = await self.sim.messages(to=user)
        (message,) = sent[-1]["messages"]
        return dict(message)

    async def balance(self, user: str) -> int:
        doc = await self.db["customers"].find_one({"_id": customer_key(self.shop.shop_id, user)})
        return int(((doc or {}).get("points") or {}).get("balance", 0))

    async def ledger(self, user: str, kind: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"shop_id": self.shop.shop_id, "line_user_id": user}
        if kind is not None:
            query["type"] = kind
        return [doc async for doc in self.db["points_ledger"].find(query).sort("occurred_at", 1)]

    async def records(self, **match: Any) -> list[dict[str, Any]]:
        """Every delivery-log item of the shop (oldest batch first), optionally matching some fields."""
        items = [dict(item, flow=batch["flow"]) async for batch in self.db["delivery_log"].find(
            {"shop_id": self.shop.shop_id}).sort("at", 1) for item in batch["items"]]
        return [i for i in items if all(i.get(k) == v for k, v in match.items())]

    async def report(self, **query: str) -> dict[str, Any]:
        return dict(await self.admin("GET", "/reports/points", params=query))


def texts(message: dict[str, Any]) -> list[str]:
    return flex_texts(message["contents"])


@pytest.fixture
async def world(client: TestClient[Any, Any], make_shop: Any, clock: FixedClock,
                linesim_url: str) -> AsyncIterator[World]:
    shop = await make_shop()
    async with SimClient(linesim_url) as sim:
        world = World(client, shop, clock, sim)
        await world.admin("PUT", "/settings/messaging", {"shop_url": SHOP_URL})
        yield world
