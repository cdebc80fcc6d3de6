"""Helpers for step-sequence scenarios: everything a shop and its customers do goes through the app —
sequences and tags through the admin API, follows through linesim's signed webhooks, visits through the
tracking endpoint, links through the link import — and the worker's engine runs at chosen moments."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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
from linking.tracking import events_applied
from storage.contacts import ContactRepository
from storage.database import Database
from tests.bot.conftest import settle
from tests.conftest import ShopHandle

SHOP_ORIGIN = "https://shop.example"


def text(body: str) -> dict[str, Any]:
    return {"type": "text", "text": body}


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def days(n: float) -> timedelta:
    return timedelta(days=n)


@dataclass
class World:
    client: TestClient[web.Request, web.Application]
    shop: ShopHandle
    clock: FixedClock
    sim: SimClient
    seen: int = 0  # pushes already looked at by `new_pushes`
    browsers: dict[str, str] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        return self.client.app[DATABASE]

    def api(self, path: str) -> str:
        return f"/admin/api/v1/shops/{self.shop.shop_id}{path}"

    async def put_sequence(self, sequence_id: str, body: dict[str, Any], status: int | None = None) -> dict[str, Any]:
        response = await self.client.put(self.api(f"/sequences/{sequence_id}"), json=body, headers=self.shop.auth)
        answer: dict[str, Any] = await response.json()
        if status is None:
            assert response.status in (200, 201), answer
        else:
            assert response.status == status, answer
        return answer

    async def delete_sequence(self, sequence_id: str) -> int:
        response = await self.client.delete(self.api(f"/sequences/{sequence_id}"), headers=self.shop.auth)
        return response.status

    # --- what customers do ---

    async def follow(self, user: str, name: str | None = None, at: datetime | None = None) -> None:
        """The customer adds the shop's account as a friend (a signed webhook from linesim)."""
        await self.sim.add_user(user, display_name=name or f"客{user[-4:]}")
        await self.play({"type": "follow", "user_id": user}, at)

    async def unfollow(self, user: str, at: datetime | None = None) -> None:
        await self.play({"type": "unfollow", "user_id": user}, at)

    async def play(self, event: dict[str, Any], at: datetime | None = None) -> None:
        """linesim signs and posts the event to the bot; then wait until the bot handled it."""
        if at is not None:
            self.clock.set(at)
        url = str(self.client.make_url("/webhook/" + self.shop.shop_id))
        answer = await self.sim.webhook(url, self.shop.channel_secret, event=event)
        assert answer["status"] == 200, answer
        await settle(self.client.app)

    def browser(self, who: str) -> str:
        return self.browsers.setdefault(who, "b-" + secrets.token_hex(8))

    async def visit(self, who: str, path: str, at: datetime, *, utm: dict[str, str] | None = None,
                    kind: str = "page_view", **fields: Any) -> None:
        """A page of the shop sends an event from the customer's browser (the tracking endpoint)."""
        self.clock.set(at)
        event: dict[str, Any] = {"event_id": secrets.token_hex(8), "browser_id": self.browser(who), "type": kind,
                                 "url": SHOP_ORIGIN + path, **fields}
        if utm:
            event["utm"] = utm
        response = await self.client.post(f"/t/{self.shop.shop_id}/events", json=event,
                                          headers={"Origin": SHOP_ORIGIN})
        assert response.status == 204, await response.text()
        await events_applied(self.client.app)

    async def link(self, who: str, user: str, at: datetime) -> None:
        """The shop imports the browser ↔ LINE user link (as any link method ends: `link_browser`)."""
        self.clock.set(at)
        response = await self.client.post(self.api("/links"), json={"browser_id": self.browser(who),
                                                                    "line_user_id": user}, headers=self.shop.auth)
        assert response.status == 201, await response.text()

    async def tag(self, users: list[str], at: datetime, add: list[str] | None = None,
                  remove: list[str] | None = None) -> None:
        self.clock.set(at)
        response = await self.client.post(self.api("/customers/tags"), json={
            "line_user_ids": users, "add": add or [], "remove": remove or []}, headers=self.shop.auth)
        assert response.status == 200, await response.text()

    async def order(self, user: str, order_id: str, total: int, at: datetime) -> None:
        self.clock.set(at)
        body = {"order_id": order_id, "line_user_id": user, "status": "paid", "ordered_at": at.isoformat(),
                "items": [{"product_id": "p1", "quantity": 1, "price": total}], "total": total}
        response = await self.client.post(self.api("/orders"), json=body, headers=self.shop.auth)
        assert response.status in (200, 201), await response.text()

    # --- the worker and what it sent ---

    async def run(self, at: datetime, **config: Any) -> JobSummary:
        self.clock.set(at)
        app = self.client.app
        ctx = JobContext(database=app[DATABASE], line=app[LINE], settings=app[SETTINGS], worker_id="test")
        return await Engine(delivery_flows(app[SETTINGS].public_base)).run(ctx, at, None, EngineConfig(**config))

    async def pushes(self, user: str | None = None) -> list[dict[str, Any]]:
        return await self.sim.messages(to=user, kind="push")

    async def new_pushes(self) -> list[tuple[str, list[str]]]:
        """(to, texts) of each push since the last call."""
        pushes = await self.pushes()
        fresh, self.seen = pushes[self.seen:], len(pushes)
        return [(p["to"], [m.get("text", m.get("altText", m["type"])) for m in p["messages"]]) for p in fresh]

    async def run_state(self, user: str, sequence_id: str) -> dict[str, Any]:
        contact = await ContactRepository(self.db).get(self.shop.shop_id, user) or {}
        return dict((contact.get("flows") or {}).get(f"seq:{sequence_id.replace('.', '%2E')}") or {})

    async def records(self, sequence_id: str) -> list[dict[str, Any]]:
        return [item async for batch in self.db["delivery_log"].find(
            {"shop_id": self.shop.shop_id, "flow": f"seq:{sequence_id}"}).sort("at", 1) for item in batch["items"]]

    async def report(self, sequence_id: str, **query: str) -> dict[str, Any]:
        response = await self.client.get(self.api(f"/reports/sequences/{sequence_id}"), params=query,
                                         headers=self.shop.auth)
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer

    async def dry_run(self, user: str, at: datetime | None = None) -> dict[str, Any]:
        params = {"line_user_id": user, **({"at": at.isoformat()} if at else {})}
        response = await self.client.get(self.api("/sequences/dry-run"), params=params, headers=self.shop.auth)
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


@pytest.fixture
async def world(client: TestClient[Any, Any], make_shop: Any, clock: FixedClock,
                linesim_url: str) -> AsyncIterator[World]:
    shop = await make_shop()
    response = await client.put(f"/admin/api/v1/shops/{shop.shop_id}/settings/tracking",
                                json={"allowed_origins": [SHOP_ORIGIN]}, headers=shop.auth)
    assert response.status == 200, await response.text()
    async with SimClient(linesim_url) as sim:
        yield World(client, shop, clock, sim)
