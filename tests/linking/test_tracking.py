"""The events endpoint: validation, CORS, idempotency, rate limit, view counters, attribution."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from core.clock import FixedClock
from linking.tracking import BROWSER_BUDGETS
from storage.database import Database
from tests.conftest import START, ShopHandle
from tests.linking.conftest import SHOP_ORIGIN, browser_id, event, line_user_id, post_events, stored_events


def db(client: TestClient[web.Request, web.Application]) -> Database:
    return client.app[DATABASE]


async def count(client: TestClient[Any, Any], collection: str, query: dict[str, Any] | None = None) -> int:
    return await db(client)[collection].count_documents(query or {})


async def test_single_event_is_stored_with_server_time_and_cors(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    one = event(bid, product_id="p1", referrer="https://www.google.com/", utm={"source": "line", "campaign": "dec"})
    response = await post_events(client, shop.shop_id, one)
    assert response.status == 204, await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
    assert "Origin" in response.headers["Vary"]
    [stored] = await stored_events(client, shop.shop_id, event_id=one["event_id"])
    assert stored["received_at"] == START and stored["product_id"] == "p1" and stored["state"] == "done"
    browser = await db(client)["browsers"].find_one({"_id": f"{shop.shop_id}:{bid}"})
    assert browser is not None
    assert browser["first_utm"] == {"source": "line", "campaign": "dec"}
    assert browser["first_referrer"] == "https://www.google.com/" and browser["line_user_id"] is None
    view = await db(client)["product_views"].find_one({"_id": f"{shop.shop_id}:{bid}:p1"})
    assert view is not None
    assert view["count"] == 1 and view["first_viewed_at"] == START and view["line_user_id"] is None


async def test_batch_and_retries_count_each_view_once(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    batch = [event(bid, product_id="p1"), event(bid, product_id="p1"), event(bid, product_id="p2"),
             event(bid, type="add_to_cart", product_id="p2", quantity=1, cart_token="c1")]
    assert (await post_events(client, shop.shop_id, batch)).status == 204
    assert (await post_events(client, shop.shop_id, batch)).status == 204  # a retried beacon
    assert (await post_events(client, shop.shop_id, [batch[0], batch[0]])).status == 204
    assert len(await stored_events(client, shop.shop_id)) == 4
    views = {v["product_id"]: v["count"] async for v in db(client)["product_views"].find({"browser_id": bid})}
    assert views == {"p1": 2, "p2": 1}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"42", 422, None),
        (b"[]", 422, None),
        ({"type": "page_view"}, 422, "event_id"),
        ("event:type=teleport", 422, "type"),
        ("event:url=javascript:alert(1)", 422, "url"),
        ("event:browser_id=no spaces", 422, "browser_id"),
        ("event:received_at=2020-01-01T00:00:00Z", 422, "received_at"),
        ("event:quantity=0", 422, "quantity"),
        ("batch:21", 422, None),
        ("batch:bad-second", 422, "[1].type"),
    ],
)
async def test_junk_is_refused_and_nothing_is_stored(
    client: TestClient[Any, Any], shop: ShopHandle, body: Any, status: int, field: str | None
) -> None:
    bid = browser_id()
    if isinstance(body, str) and body.startswith("event:"):
        key, _, value = body[6:].partition("=")
        body = event(bid, **{key: int(value) if key == "quantity" else value})
    elif body == "batch:21":
        body = [event(bid) for _ in range(21)]
    elif body == "batch:bad-second":
        body = [event(bid), event(bid, type="nope")]
    response = await post_events(client, shop.shop_id, body)
    assert response.status == status, await response.text()
    error = (await response.json())["error"]
    if field is not None:
        assert error["field"] == field
    assert await count(client, "tracking_batches") == 0
    assert await count(client, "browsers") == 0 and await count(client, "product_views") == 0


async def test_oversized_body_is_413(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    response = await post_events(client, shop.shop_id, "[" + " " * 40_000 + "]")
    assert response.status == 413
    assert await count(client, "tracking_batches") == 0


async def test_unknown_shop_and_foreign_origin_are_refused(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    assert (await post_events(client, "shp_0000000000000000", event(bid))).status == 404
    response = await post_events(client, shop.shop_id, event(bid), origin="https://evil.example")
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert await count(client, "tracking_batches") == 0


async def test_preflight_only_for_allowed_origins(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    url = f"/t/{shop.shop_id}/events"
    ok = await client.options(url, headers={"Origin": SHOP_ORIGIN, "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "content-type"})
    assert ok.status == 204
    assert ok.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
    assert ok.headers["Access-Control-Allow-Methods"] == "POST"
    bad = await client.options(url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert bad.status == 403 and "Access-Control-Allow-Origin" not in bad.headers


async def test_rate_limit_per_browser_per_minute(
    client: TestClient[Any, Any], shop: ShopHandle, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client.app[BROWSER_BUDGETS], "limit", 5)
    bid, other = browser_id(), browser_id()
    assert (await post_events(client, shop.shop_id, [event(bid) for _ in range(3)])).status == 204
    assert (await post_events(client, shop.shop_id, [event(bid) for _ in range(2)])).status == 204
    refused = await post_events(client, shop.shop_id, event(bid, product_id="p9"))
    assert refused.status == 429 and refused.headers["Retry-After"] == "60"
    assert (await refused.json())["error"]["code"] == "rate_limited"
    assert (await post_events(client, shop.shop_id, event(other))).status == 204  # another browser is not affected
    assert len(await stored_events(client, shop.shop_id, browser_id=bid)) == 5
    assert await count(client, "product_views", {"product_id": "p9"}) == 0
    clock.advance(timedelta(minutes=1))
    assert (await post_events(client, shop.shop_id, event(bid))).status == 204


async def test_linked_browser_views_are_attributed_and_announced(
    client: TestClient[Any, Any], shop: ShopHandle
) -> None:
    from linking.links import link_browser

    bid, user = browser_id(), line_user_id()
    await link_browser(db(client), shop.shop_id, bid, user, "import", START)
    seen: list[tuple[str, str, str]] = []

    async def listener(database: Any, shop_id: str, line_user: str, product_id: str, viewed_at: Any) -> None:
        seen.append((shop_id, line_user, product_id))

    signals = db(client).signals
    signals.product_viewed.connect(listener)
    try:
        assert (await post_events(client, shop.shop_id, [event(bid, product_id="p1"), event(bid)])).status == 204
    finally:
        signals.product_viewed.disconnect(listener)
    view = await db(client)["product_views"].find_one({"_id": f"{shop.shop_id}:{bid}:p1"})
    assert view is not None
    assert view["line_user_id"] == user
    assert seen == [(shop.shop_id, user, "p1")]


async def test_hot_queries_use_indexes(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    await post_events(client, shop.shop_id, event(bid, product_id="p1"))
    database = db(client)
    for collection, query in (
        ("product_views", {"shop_id": shop.shop_id, "line_user_id": "U" + "0" * 32}),
        ("product_views", {"shop_id": shop.shop_id, "browser_id": bid}),
        ("browsers", {"shop_id": shop.shop_id, "line_user_id": {"$gt": ""}}),
        ("customers", {"shop_id": shop.shop_id, "linked": True, "friend": True, "blocked": False, "opted_out": False}),
    ):
        plan = str(await database[collection].find(query).explain())
        assert "IXSCAN" in plan and "COLLSCAN" not in plan, (collection, plan)
