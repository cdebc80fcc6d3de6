"""link_browser (every method ends there), the admin import route and the counts report."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from linking.links import LinkStatus, link_browser
from storage.customers import CustomerRepository
from storage.database import Database
from tests.conftest import START, ShopHandle
from tests.linking.conftest import browser_id, event, line_user_id, post_events


def db(client: TestClient[web.Request, web.Application]) -> Database:
    return client.app[DATABASE]


async def test_earlier_views_count_for_the_customer_once_linked(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid, user = browser_id(), line_user_id()
    await post_events(client, shop.shop_id, [event(bid, product_id="p1"), event(bid, product_id="p2")])
    linked: list[tuple[str, str, str]] = []

    async def listener(database: Any, shop_id: str, browser: str, line_user: str, now: Any) -> None:
        linked.append((shop_id, browser, line_user))

    signals = db(client).signals
    signals.browser_linked.connect(listener)
    try:
        outcome = await link_browser(db(client), shop.shop_id, bid, user, "line_login", START)
    finally:
        signals.browser_linked.disconnect(listener)
    assert outcome.ok and outcome.status is LinkStatus.LINKED
    assert linked == [(shop.shop_id, bid, user)]
    views = [v async for v in db(client)["product_views"].find({"shop_id": shop.shop_id, "line_user_id": user})]
    assert sorted(v["product_id"] for v in views) == ["p1", "p2"]
    customer = await CustomerRepository(db(client)).get(shop.shop_id, user)
    assert customer is not None
    assert customer["linked"] is True and customer["browser_ids"] == [bid] and customer["friend"] is False
    browser = await db(client)["browsers"].find_one({"_id": f"{shop.shop_id}:{bid}"})
    assert browser is not None
    assert browser["link_method"] == "line_login" and browser["linked_at"] == START
    assert browser["link_history"] == [
        {"line_user_id": user, "previous_line_user_id": None, "method": "line_login", "at": START}
    ]


async def test_relinking_the_same_user_is_idempotent(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid, user = browser_id(), line_user_id()
    await link_browser(db(client), shop.shop_id, bid, user, "chat_code", START)
    again = await link_browser(db(client), shop.shop_id, bid, user, "chat_code", START + timedelta(minutes=1))
    assert again.status is LinkStatus.ALREADY_LINKED and again.ok
    browser = await db(client)["browsers"].find_one({"_id": f"{shop.shop_id}:{bid}"})
    assert browser is not None
    assert len(browser["link_history"]) == 1


async def test_a_browser_moves_only_through_a_new_link_and_it_is_recorded(
    client: TestClient[Any, Any], shop: ShopHandle
) -> None:
    bid, first, second = browser_id(), line_user_id(), line_user_id()
    await post_events(client, shop.shop_id, event(bid, product_id="p1"))
    await link_browser(db(client), shop.shop_id, bid, first, "line_login", START)
    moved = await link_browser(db(client), shop.shop_id, bid, second, "chat_code", START + timedelta(hours=1))
    assert moved.status is LinkStatus.MOVED and moved.previous_line_user_id == first
    browser = await db(client)["browsers"].find_one({"_id": f"{shop.shop_id}:{bid}"})
    assert browser is not None
    assert browser["line_user_id"] == second
    assert [(h["line_user_id"], h["previous_line_user_id"]) for h in browser["link_history"]] == [
        (first, None), (second, first)
    ]
    customers = CustomerRepository(db(client))
    left, joined = await customers.get(shop.shop_id, first), await customers.get(shop.shop_id, second)
    assert left is not None and left["linked"] is False
    assert joined is not None and joined["browser_ids"] == [bid]
    view = await db(client)["product_views"].find_one({"_id": f"{shop.shop_id}:{bid}:p1"})
    assert view is not None
    assert view["line_user_id"] == second


async def test_admin_import_route(client: TestClient[Any, Any], shop: ShopHandle, make_shop: Any) -> None:
    bid, user = browser_id(), line_user_id()
    url = f"/admin/api/v1/shops/{shop.shop_id}/links"
    response = await client.post(url, json={"browser_id": bid, "line_user_id": user}, headers=shop.auth)
    assert response.status == 201, await response.text()
    assert await response.json() == {"browser_id": bid, "line_user_id": user, "status": "linked",
                                      "previous_line_user_id": None}
    for bad, field in (({"browser_id": bid, "line_user_id": "not-a-line-id"}, "line_user_id"),
                       ({"browser_id": "bad id!", "line_user_id": user}, "browser_id"),
                       ({"browser_id": bid, "line_user_id": user, "extra": 1}, "extra")):
        refused = await client.post(url, json=bad, headers=shop.auth)
        assert refused.status == 422 and (await refused.json())["error"]["field"] == field
    other = await make_shop()
    assert (await client.post(url, json={"browser_id": browser_id(), "line_user_id": user},
                              headers=other.auth)).status == 401
    assert await db(client)["browsers"].count_documents({}) == 1


async def test_counts_report(client: TestClient[Any, Any], shop: ShopHandle, make_shop: Any) -> None:
    database = db(client)
    customers = CustomerRepository(database)
    friend_linked, friend_only, blocked_linked, opted_out_linked = (line_user_id() for _ in range(4))
    for user in (friend_linked, friend_only, blocked_linked, opted_out_linked):
        await customers.record_follow(shop.shop_id, user, None, False, START)
    await customers.record_unfollow(shop.shop_id, blocked_linked, START)
    await customers.set_opted_out(shop.shop_id, opted_out_linked, True, START)
    for user in (friend_linked, blocked_linked, opted_out_linked):
        await link_browser(database, shop.shop_id, browser_id(), user, "import", START)
    await link_browser(database, shop.shop_id, browser_id(), friend_linked, "import", START)  # a second browser
    await post_events(client, shop.shop_id, event(browser_id()))  # an unlinked browser
    other = await make_shop()  # another shop's customers never count here
    await customers.record_follow(other.shop_id, line_user_id(), None, False, START)
    response = await client.get(f"/admin/api/v1/shops/{shop.shop_id}/reports/links", headers=shop.auth)
    assert response.status == 200
    assert await response.json() == {
        "friends": 3, "blocked": 1, "linked_browsers": 4, "linked_customers": 3, "reachable_customers": 1,
    }
    doc = await (await client.get("/admin/api/v1/openapi.json")).json()
    assert "/admin/api/v1/shops/{shop_id}/reports/links" in doc["paths"]
