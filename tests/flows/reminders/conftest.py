"""Helpers for reminder scenarios: catalogue and orders through the admin API, customers and
views as the contracts describe them, the job run with the app's own resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE, LINE, SETTINGS
from core.clock import FixedClock
from delivery.context import JobContext, JobSummary
from delivery.engine import Engine, EngineConfig
from flows.listeners import delivery_flows
from linesim.client import SimClient
from storage.contacts import ContactRepository
from storage.customers import CustomerRepository
from storage.database import Database
from storage.keys import customer_key
from tests.conftest import ShopHandle


@dataclass
class World:
    """One shop with reminders on, and verbs for a scenario."""

    client: TestClient[web.Request, web.Application]
    shop: ShopHandle
    clock: FixedClock
    sim: SimClient

    @property
    def db(self) -> Database:
        return self.client.app[DATABASE]

    async def settings(self, **fields: Any) -> None:
        response = await self.client.put(f"/admin/api/v1/shops/{self.shop.shop_id}/settings/reminders",
                                         json={"enabled": True, **fields}, headers=self.shop.auth)
        assert response.status == 200, await response.text()

    async def product(self, pid: str, stock: int = 50, **fields: Any) -> None:
        body = {"title": f"商品 {pid}", "url": f"https://shop.example/products/{pid}?ref=x",
                "image_url": f"https://shop.example/img/{pid}.jpg", "price": 12800, "published": True,
                "track_inventory": True, "continue_selling": False,
                "variants": [{"id": "v1", "stock": stock}], **fields}
        response = await self.client.put(f"/admin/api/v1/shops/{self.shop.shop_id}/products/{pid}", json=body,
                                         headers=self.shop.auth)
        assert response.status in (200, 201), await response.text()

    async def customer(self, user: str, *, linked: bool = True, **fields: Any) -> None:
        repo = CustomerRepository(self.db)
        await repo.record_follow(self.shop.shop_id, user, None, False, self.clock.now())
        await self.db["customers"].update_one(
            {"_id": customer_key(self.shop.shop_id, user)},
            {"$set": {"linked": linked, "browser_ids": [f"b-{user}"] if linked else [], **fields}},
        )

    async def view(self, user: str | None, pid: str, at: datetime, *, browser: str | None = None,
                   count: int = 1) -> None:
        """A product page view as the tracking endpoint stores it, and its signal when linked."""
        shop_id = self.shop.shop_id
        browser = browser or f"b-{user}"
        await self.db["product_views"].update_one(
            {"_id": f"{shop_id}:{browser}:{pid}"},
            {"$inc": {"count": count}, "$min": {"first_viewed_at": at}, "$max": {"last_viewed_at": at},
             "$set": {"shop_id": shop_id, "browser_id": browser, "product_id": pid, "line_user_id": user}},
            upsert=True,
        )
        if user is not None:
            await self.db.signals.product_viewed.send(self.db, shop_id, user, pid, at, now=at)

    async def order(self, user: str, order_id: str, items: list[tuple[str, int]], at: datetime,
                    status: str = "paid") -> None:
        body = {"order_id": order_id, "line_user_id": user, "status": status, "ordered_at": at.isoformat(),
                "items": [{"product_id": p, "quantity": 1, "price": price} for p, price in items],
                "total": sum(price for _, price in items)}
        response = await self.client.post(f"/admin/api/v1/shops/{self.shop.shop_id}/orders", json=body,
                                          headers=self.shop.auth)
        assert response.status in (200, 201), await response.text()

    async def run(self, at: datetime, **config: Any) -> JobSummary:
        self.clock.set(at)
        app = self.client.app
        ctx = JobContext(database=app[DATABASE], line=app[LINE], settings=app[SETTINGS], worker_id="test")
        return await Engine(delivery_flows(app[SETTINGS].public_base)).run(ctx, at, None, EngineConfig(**config))

    async def pushes(self, user: str | None = None) -> list[dict[str, Any]]:
        return await self.sim.messages(to=user, kind="push")

    async def contact(self, user: str) -> dict[str, Any]:
        """The customer's delivery state (`contacts`), `{}` before any."""
        return dict(await ContactRepository(self.db).get(self.shop.shop_id, user) or {})

    async def reminder(self, user: str) -> dict[str, Any]:
        """The customer's reminder state (the contact's `flows.reminders`), `{}` before any cycle."""
        return dict(((await self.contact(user)).get("flows") or {}).get("reminders") or {})

    async def records(self, **match: Any) -> list[dict[str, Any]]:
        """Every delivery-log item of the shop (oldest batch first), optionally matching some fields."""
        items = [dict(item, flow=batch["flow"]) async for batch in self.db["delivery_log"].find(
            {"shop_id": self.shop.shop_id}).sort("at", 1) for item in batch["items"]]
        return [i for i in items if all(i.get(k) == v for k, v in match.items())]

    async def report(self, **query: str) -> dict[str, Any]:
        response = await self.client.get(f"/admin/api/v1/shops/{self.shop.shop_id}/reports/reminders",
                                         params=query, headers=self.shop.auth)
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


@pytest.fixture
async def world(client: TestClient[Any, Any], make_shop: Any, clock: FixedClock,
                linesim_url: str) -> AsyncIterator[World]:
    shop = await make_shop()
    async with SimClient(linesim_url) as sim:
        yield World(client, shop, clock, sim)


async def due_refs(repo: ContactRepository, now: datetime, limit: int = 10) -> list[Any]:
    """What the engine's due stream would hand out first at `now`."""
    async for batch in repo.due_stream(now, None, limit):
        return batch
    return []


def days(n: float) -> timedelta:
    return timedelta(days=n)


def bubbles(push: dict[str, Any]) -> list[dict[str, Any]]:
    (message,) = push["messages"]
    assert message["type"] == "flex"
    return list(message["contents"]["contents"])


