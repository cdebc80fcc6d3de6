"""Helpers for cart scenarios: carts through the tracking endpoint and the admin API, links, orders, the engine
run with the app's own resources, and what linesim received."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
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
from tests.conftest import ShopHandle
from tests.linking.conftest import SHOP_ORIGIN, post_events

RECOVERY = "https://shop.example/cart/recover?token={cart_token}"


def user(n: int) -> str:
    return f"U{n:032x}"


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


@dataclass
class CartWorld:
    """One shop with cart reminders on, and verbs for a scenario."""

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

    async def settings(self, **fields: Any) -> None:
        body = {"enabled": True, "delay_hours": 3, "recovery_url_template": RECOVERY, **fields}
        response = await self.client.put(f"{self.base}/settings/cart", json=body, headers=self.shop.auth)
        assert response.status == 200, await response.text()

    async def put_settings(self, section: str, body: dict[str, Any]) -> None:
        response = await self.client.put(f"{self.base}/settings/{section}", json=body, headers=self.shop.auth)
        assert response.status == 200, await response.text()

    async def product(self, pid: str, stock: int = 50, **fields: Any) -> None:
        body = {"title": f"商品 {pid}", "url": f"https://shop.example/products/{pid}",
                "image_url": f"https://shop.example/img/{pid}.jpg", "price": 12800, "published": True,
                "track_inventory": True, "continue_selling": False,
                "variants": [{"id": "v1", "title": "Mサイズ", "stock": stock}], **fields}
        response = await self.client.put(f"{self.base}/products/{pid}", json=body, headers=self.shop.auth)
        assert response.status in (200, 201), await response.text()

    async def customer(self, line_user_id: str, *, browser: str | None = None) -> str:
        """A friend of the shop, linked to `browser` (default "b-<user>"); returns the browser ID."""
        await CustomerRepository(self.db).record_follow(self.shop.shop_id, line_user_id, None, False, self.clock.now())
        browser = browser or f"b-{line_user_id[-6:]}"
        await self.link(browser, line_user_id)
        return browser

    async def link(self, browser: str, line_user_id: str) -> None:
        response = await self.client.post(f"{self.base}/links", json={"browser_id": browser,
                                                                     "line_user_id": line_user_id},
                                          headers=self.shop.auth)
        assert response.status in (200, 201), await response.text()

    async def events(self, at: datetime, browser: str, *events: dict[str, Any]) -> None:
        """Browser events as the tracking script sends them, received at `at`."""
        self.clock.set(at)
        body = [{"event_id": secrets.token_urlsafe(12), "browser_id": browser, "url": f"{SHOP_ORIGIN}/cart", **e}
                for e in events]
        response = await post_events(self.client, self.shop.shop_id, body)
        assert response.status == 204, await response.text()

    async def add(self, at: datetime, browser: str, token: str, pid: str, quantity: int = 1,
                  value: int | None = None, **extra: Any) -> None:
        event = {"type": "add_to_cart", "cart_token": token, "product_id": pid, "quantity": quantity, **extra}
        if value is not None:
            event["value"] = value
        await self.events(at, browser, event)

    async def checkout(self, at: datetime, browser: str, token: str) -> None:
        await self.events(at, browser, {"type": "checkout_started", "cart_token": token})

    async def purchase(self, at: datetime, browser: str, token: str | None, order_id: str = "web-1") -> None:
        event: dict[str, Any] = {"type": "purchase", "order_id": order_id}
        if token:
            event["cart_token"] = token
        await self.events(at, browser, event)

    async def put_cart(self, at: datetime, token: str, items: list[dict[str, Any]], expect: int | None = None,
                       **fields: Any) -> Any:
        self.clock.set(at)
        response = await self.client.put(f"{self.base}/carts/{token}", json={"items": items, **fields},
                                         headers=self.shop.auth)
        body = await response.json()
        if expect is not None:
            assert response.status == expect, body
        return response.status, body

    async def order(self, line_user_id: str | None, order_id: str, total: int, at: datetime,
                    cart_token: str | None = None, **fields: Any) -> None:
        self.clock.set(at)
        body: dict[str, Any] = {"order_id": order_id, "status": "paid", "ordered_at": at.isoformat(),
                                "items": [{"product_id": "p1", "quantity": 1, "price": total}], "total": total,
                                **fields}
        if line_user_id:
            body["line_user_id"] = line_user_id
        if cart_token:
            body["cart_token"] = cart_token
        response = await self.client.post(f"{self.base}/orders", json=body, headers=self.shop.auth)
        assert response.status in (200, 201), await response.text()

    async def run(self, at: datetime, **config: Any) -> JobSummary:
        self.clock.set(at)
        app = self.client.app
        ctx = JobContext(database=app[DATABASE], line=app[LINE], settings=app[SETTINGS], worker_id="test")
        return await Engine(delivery_flows(app[SETTINGS].public_base)).run(ctx, at, None, EngineConfig(**config))

    async def pushes(self, to: str | None = None) -> list[dict[str, Any]]:
        return await self.sim.messages(to=to, kind="push")

    async def journey(self, line_user_id: str) -> dict[str, Any]:
        contact = await ContactRepository(self.db).get(self.shop.shop_id, line_user_id) or {}
        return dict((contact.get("flows") or {}).get("cart") or {})

    async def cart(self, token: str) -> dict[str, Any]:
        response = await self.client.get(f"{self.base}/carts/{token}", headers=self.shop.auth)
        assert response.status == 200, await response.text()
        return dict(await response.json())

    async def records(self, **match: Any) -> list[dict[str, Any]]:
        items = [dict(item, flow=batch["flow"]) async for batch in self.db["delivery_log"].find(
            {"shop_id": self.shop.shop_id, "flow": "cart"}).sort("at", 1) for item in batch["items"]]
        return [i for i in items if all(i.get(k) == v for k, v in match.items())]

    async def report(self, **query: str) -> dict[str, Any]:
        response = await self.client.get(f"{self.base}/reports/cart", params=query, headers=self.shop.auth)
        assert response.status == 200, await response.text()
        return dict(await response.json())

    async def dry_run(self, token: str, at: datetime | None = None) -> dict[str, Any]:
        params = {"at": at.isoformat()} if at else {}
        response = await self.client.get(f"{self.base}/carts/{token}/dry-run", params=params, headers=self.shop.auth)
        assert response.status == 200, await response.text()
        return dict(await response.json())


@pytest.fixture
async def world(client: TestClient[Any, Any], make_shop: Any, clock: FixedClock,
                linesim_url: str) -> AsyncIterator[CartWorld]:
    shop = await make_shop()
    response = await client.put(f"/admin/api/v1/shops/{shop.shop_id}/settings/tracking",
                                json={"allowed_origins": [SHOP_ORIGIN]}, headers=shop.auth)
    assert response.status == 200, await response.text()
    async with SimClient(linesim_url) as sim:
        yield CartWorld(client, shop, clock, sim)


def messages(push: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(the text, the carousel's bubbles) of a cart reminder push."""
    text, flex = push["messages"]
    assert text["type"] == "text" and flex["type"] == "flex" and flex["contents"]["type"] == "carousel"
    return text["text"], list(flex["contents"]["contents"])
