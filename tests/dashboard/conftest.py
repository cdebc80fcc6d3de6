"""Fixtures for the dashboard: a shop with real deliveries (reminders sent, held out, skipped, clicked,
bought), and signing in through the dashboard's own forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from core.clock import FixedClock
from linesim.client import SimClient
from tests.conftest import START, ShopHandle
from tests.flows.reminders.conftest import World, bubbles, days

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PERIOD = {"from": "2037-12-01", "to": "2037-12-20"}
# With a 50% holdout (by a hash of shop and customer; the shop ID is random) both groups are all but
# certain to be non-empty: all 16 on one side has odds of 2 in 65,536.
TREATED = [f"U{n:032x}" for n in range(1, 17)]
OPTED_OUT = "U" + "e" * 32
LINKED_BROWSER = "browser-dash-1"
TAG = "会員:ゴールド"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(client: TestClient[Any, Any], shop_id: str, api_key: str) -> Any:
    """The sign-in form as a browser fills it: GET (pre-session cookie + token), then POST."""
    form = await client.get("/dashboard/login")
    assert form.status == 200
    return await client.post("/dashboard/login", allow_redirects=False,
                             data={"csrf": csrf_of(await form.text()), "shop_id": shop_id, "api_key": api_key})


@dataclass
class Deliveries:
    """What the fixture made happen, for the tests to check the pages against."""

    shop: ShopHandle
    sent: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    clicked: str = ""
    buyer: str = ""


async def make_deliveries(world: World) -> Deliveries:
    """Reminders over two weeks for 16 linked customers (half held out), an opted-out one skipped, a click,
    an order after it, points, a tag and a linked browser."""
    shop = world.shop
    base = f"/admin/api/v1/shops/{shop.shop_id}"
    await world.settings(quiet_hours={"enabled": False})
    response = await world.client.put(f"{base}/settings/delivery", json={"holdout_percent": 50}, headers=shop.auth)
    assert response.status == 200, await response.text()
    for pid in ("p1", "p2", "p3"):
        await world.product(pid)
    for user in [*TREATED, OPTED_OUT]:
        await world.customer(user, **({"opted_out": True} if user == OPTED_OUT else {}))
        await world.view(user, "p1", START, count=2)
        await world.view(user, "p2", START + days(1))
    await world.run(START + days(3))
    await world.run(START + days(7))
    pushes = await world.pushes()
    records = await world.records()
    result = Deliveries(shop, sent=sorted({p["to"] for p in pushes}),
                        held=sorted({r["user"] for r in records if r["status"] == "held"}))
    assert result.sent and result.held, "the fixture needs both treated and held-out customers"
    # A click on the first reminder, then that customer buys (a conversion attributed to it).
    first = next(p for p in pushes if p["to"] == result.sent[0])
    world.clock.set(START + days(4))
    url = bubbles(first)[0]["footer"]["contents"][0]["action"]["uri"]
    click = await world.client.get(urlsplit(url).path, allow_redirects=False)
    assert click.status == 302
    result.clicked = result.buyer = result.sent[0]
    await world.order(result.buyer, "o-dash-1", [("p1", 12800)], START + days(5))
    await world.order(result.held[0], "o-dash-2", [("p2", 5400)], START + days(5))
    # Points, a tag and a browser linked through the admin API.
    await world.client.post(f"{base}/points/transactions", headers=shop.auth, json={
        "transaction_id": "t-dash-1", "line_user_id": result.buyer, "type": "earn", "amount": 120,
        "expires_at": (START + days(200)).isoformat(), "reason": "購入ポイント"})
    await world.client.post(f"{base}/customers/tags", headers=shop.auth,
                            json={"line_user_ids": result.sent[:2], "add": [TAG]})
    response = await world.client.post(f"{base}/links", headers=shop.auth,
                                       json={"browser_id": LINKED_BROWSER, "line_user_id": result.buyer})
    assert response.status == 201, await response.text()
    world.clock.set(START + days(8))
    return result


@pytest.fixture
async def world(client: TestClient[Any, Any], make_shop: Any, clock: FixedClock,
                linesim_url: str) -> AsyncIterator[World]:
    shop = await make_shop()
    async with SimClient(linesim_url) as sim:
        yield World(client, shop, clock, sim)


async def api(client: TestClient[Any, Any], shop: ShopHandle, path: str, **params: str) -> Any:
    response = await client.get(f"/admin/api/v1/shops/{shop.shop_id}{path}", params=params, headers=shop.auth)
    assert response.status == 200, await response.text()
    return await response.json()


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)
