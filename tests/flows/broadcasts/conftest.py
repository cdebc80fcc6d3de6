"""Helpers for broadcast scenarios: customers in the shapes storage keeps, segments and broadcasts through the
admin API, the worker's broadcast job run with the app's own resources, linesim's multicasts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE, LINE, SETTINGS
from core.clock import FixedClock
from delivery.context import JobContext, JobSummary
from flows.broadcasts.runner import BroadcastConfig, send_due, start_due
from linesim.client import SimClient
from storage.customers import new_customer_fields
from storage.database import Database
from storage.keys import customer_key
from tests.conftest import START, ShopHandle

TEXT = [{"type": "text", "text": "冬のセールのお知らせ"}]


def user(n: int) -> str:
    return f"U{n:032x}"


@dataclass
class World:
    client: TestClient[web.Request, web.Application]
    shop: ShopHandle
    clock: FixedClock
    sim: SimClient

    @property
    def db(self) -> Database:
        return self.client.app[DATABASE]

    @property
    def base(self) -> str:
        return f"/admin/api/v1/shops/{self.shop.shop_id}"

    def customer_doc(self, line_user_id: str, *, tags: Iterable[str] = (), spend: int = 0, purchases: int = 0,
                     rank: str | None = None, linked: bool = True, friend: bool = True, blocked: bool = False,
                     opted_out: bool = False, points: int | None = None,
                     last_purchase_at: datetime | None = None) -> dict[str, Any]:
        """A customer as storage keeps it (followed, maybe tagged, with order totals)."""
        shop_id = self.shop.shop_id
        doc = new_customer_fields(shop_id, line_user_id, START)
        doc.update(_id=customer_key(shop_id, line_user_id), friend=friend, blocked=blocked, opted_out=opted_out,
                   tags=list(tags), linked=linked, rank=rank,
                   totals={"purchase_count": purchases, "total_spend": spend, "first_seen_at": START,
                           "last_purchase_at": last_purchase_at})
        if points is not None:
            doc["points"] = {"balance": points}
        return doc

    async def customers(self, docs: list[dict[str, Any]]) -> None:
        for start in range(0, len(docs), 1000):
            await self.db["customers"].insert_many(docs[start:start + 1000], ordered=False)

    async def call(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        response = await self.client.request(method, self.base + path, headers=self.shop.auth, **kwargs)
        body = await response.json() if response.status != 204 else None
        if expect is not None:
            assert response.status == expect, body
        return body

    async def segment(self, segment_id: str, filter: dict[str, Any], **fields: Any) -> dict[str, Any]:
        response = await self.client.put(f"{self.base}/segments/{segment_id}", headers=self.shop.auth,
                                         json={"name": f"セグメント {segment_id}", "filter": filter, **fields})
        assert response.status in (200, 201), await response.text()
        return dict(await response.json())

    async def preview(self, segment_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/segments/{segment_id}/preview", 200))

    async def broadcast(self, broadcast_id: str, segment_id: str, messages: list[dict[str, Any]] | None = None,
                        expect: int = 201, **fields: Any) -> dict[str, Any]:
        body = {"broadcast_id": broadcast_id, "segment_id": segment_id, "messages": messages or TEXT, **fields}
        return dict(await self.call("POST", "/broadcasts", expect, json=body))

    async def get(self, broadcast_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/broadcasts/{broadcast_id}", 200))

    def ctx(self) -> JobContext:
        app = self.client.app
        return JobContext(database=app[DATABASE], line=app[LINE], settings=app[SETTINGS], worker_id="test")

    async def start(self, at: datetime) -> JobSummary:
        self.clock.set(at)
        return await start_due(self.ctx(), at, None)

    async def send(self, at: datetime, **config: Any) -> JobSummary:
        self.clock.set(at)
        return await send_due(self.ctx(), at, None, BroadcastConfig(**config))

    async def run(self, at: datetime, **config: Any) -> JobSummary:
        started = await self.start(at)
        return {**{f"start:{k}": v for k, v in started.items()}, **await self.send(at, **config)}

    async def multicasts(self) -> list[dict[str, Any]]:
        return await self.sim.messages(kind="multicast")


@pytest.fixture
async def world(client: TestClient[Any, Any], make_shop: Any, clock: FixedClock,
                linesim_url: str) -> AsyncIterator[World]:
    shop = await make_shop()
    async with SimClient(linesim_url) as sim:
        yield World(client, shop, clock, sim)


def recipients(multicasts: list[dict[str, Any]]) -> list[str]:
    return [u for m in multicasts for u in m["to"]]
