import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from storage import signals
from storage.orders import OrderRepository
from tests.admin_api.helpers import BASE, count, error, ok, order, product


async def customer(client: TestClient[Any, Any], shop_id: str, user: str) -> dict[str, Any]:
    doc = await client.app[DATABASE]["customers"].find_one({"_id": f"{shop_id}:{user}"})
    assert doc is not None
    return doc  # type: ignore[no-any-return]


async def sold(client: TestClient[Any, Any], shop_id: str, product_id: str) -> int:
    doc = await client.app[DATABASE]["products"].find_one({"_id": f"{shop_id}:{product_id}"})
    return int(doc["sold_count"])  # type: ignore[index]


async def test_same_order_twice_is_one_and_refund_reverses(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    await ok(await client.put(f"{BASE}/{shop.shop_id}/products/p1", json=product(), headers=shop.auth), 201)
    url = f"{BASE}/{shop.shop_id}/orders"
    calls: list[tuple[Any, Any]] = []

    async def listener(db: Any, doc: Any, previous: Any, now: Any) -> None:
        calls.append((doc["status"], previous and previous["status"]))

    signals.order_recorded.connect(listener)
    try:
        first = await ok(await client.post(url, json=order(), headers=shop.auth), 201)
        assert first["line_user_id"] == "U1" and first["ordered_at"] == "2037-11-30T01:00:00Z"
        await ok(await client.post(url, json=order(), headers=shop.auth), 200)
        totals = (await customer(client, shop.shop_id, "U1"))["totals"]
        assert (totals["purchase_count"], totals["total_spend"]) == (1, 6000)
        assert totals["last_purchase_at"].isoformat().startswith("2037-11-30T01:00")
        assert await sold(client, shop.shop_id, "p1") == 2
        refunded = await ok(await client.post(url, json=order(status="refunded"), headers=shop.auth), 200)
        assert refunded["status"] == "refunded"
        await ok(await client.post(url, json=order(status="refunded"), headers=shop.auth), 200)
        totals = (await customer(client, shop.shop_id, "U1"))["totals"]
        assert (totals["purchase_count"], totals["total_spend"], totals["last_purchase_at"]) == (0, 0, None)
        assert await sold(client, shop.shop_id, "p1") == 0
        assert await count(client, "orders") == 1
        assert calls == [("paid", None), ("refunded", "paid")]
    finally:
        signals.order_recorded._listeners.remove(listener)


async def test_concurrent_duplicates_and_status_flips_keep_totals_exact(
    client: TestClient[Any, Any], make_shop: Any
) -> None:
    shop = await make_shop()
    await ok(await client.put(f"{BASE}/{shop.shop_id}/products/p1", json=product(), headers=shop.auth), 201)
    url = f"{BASE}/{shop.shop_id}/orders"
    responses = await asyncio.gather(*[client.post(url, json=order(), headers=shop.auth) for _ in range(8)])
    assert sorted(r.status for r in responses) == [200] * 7 + [201]
    flips = [order(status="refunded"), order(status="paid")] * 4 + [order(status="refunded")]
    for body in flips:  # sequential end state is deterministic; concurrency is covered above
        await ok(await client.post(url, json=body, headers=shop.auth), 200)
    await asyncio.gather(*[client.post(url, json=order(f"o-{i}"), headers=shop.auth) for i in range(10)])
    totals = (await customer(client, shop.shop_id, "U1"))["totals"]
    assert (totals["purchase_count"], totals["total_spend"]) == (10, 60000)
    assert await sold(client, shop.shop_id, "p1") == 20


async def test_identity_resolution_by_browser_customer_id_and_email(
    client: TestClient[Any, Any], make_shop: Any
) -> None:
    shop = await make_shop()
    db = client.app[DATABASE]
    await db["browsers"].insert_one({"_id": f"{shop.shop_id}:b1", "shop_id": shop.shop_id, "browser_id": "b1",
                                     "line_user_id": "Ubrowser"})
    auth = shop.auth
    await ok(await client.post(f"{BASE}/{shop.shop_id}/customers/mappings",
                               json={"mappings": [{"shop_customer_id": "c-9", "line_user_id": "Ucust"}]}, headers=auth))
    await ok(await client.patch(f"{BASE}/{shop.shop_id}/customers/Umail", json={"email": "a@b.jp"}, headers=auth))
    url = f"{BASE}/{shop.shop_id}/orders"
    bodies = {
        "Ubrowser": order("o-b", line_user_id=None, browser_id="b1"),
        "Ucust": order("o-c", line_user_id=None, customer_id="c-9"),
        "Umail": order("o-m", line_user_id=None, email="A@B.jp"),
        None: order("o-n", line_user_id=None, browser_id="unknown"),
    }
    for user, body in bodies.items():
        assert (await ok(await client.post(url, json=body, headers=auth), 201))["line_user_id"] == user
    assert (await customer(client, shop.shop_id, "Umail"))["totals"]["purchase_count"] == 1


async def test_list_newest_first_with_cursor_and_filters(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    url = f"{BASE}/{shop.shop_id}/orders"
    for i in range(7):  # two orders share each timestamp to exercise the tie-break
        body = order(f"o-{i}", ordered_at=f"2037-11-0{1 + i // 2}T00:00:00Z",
                     status="paid" if i % 3 else "cancelled", line_user_id="U1" if i < 4 else "U2")
        await ok(await client.post(url, json=body, headers=shop.auth), 201)
    seen: list[str] = []
    params: dict[str, str] = {"limit": "3"}
    while True:
        page = await ok(await client.get(url, params=params, headers=shop.auth))
        seen += [o["order_id"] for o in page["items"]]
        if not page["next_after"]:
            break
        params["after"] = page["next_after"]
    assert seen == ["o-6", "o-5", "o-4", "o-3", "o-2", "o-1", "o-0"]
    u1 = await ok(await client.get(url, params={"line_user_id": "U1"}, headers=shop.auth))
    assert [o["order_id"] for o in u1["items"]] == ["o-3", "o-2", "o-1", "o-0"]
    cancelled = await ok(await client.get(url, params={"status": "cancelled"}, headers=shop.auth))
    assert [o["order_id"] for o in cancelled["items"]] == ["o-6", "o-3", "o-0"]
    assert (await error(await client.get(url, params={"after": "junk"}, headers=shop.auth)))["field"] == "after"
    recent = await OrderRepository(client.app[DATABASE]).recent_for_customer(
        shop.shop_id, "U1", since=datetime(2037, 11, 2, tzinfo=UTC))
    assert [o["order_id"] for o in recent] == ["o-3", "o-2"]
    got = await ok(await client.get(f"{url}/o-2", headers=shop.auth))
    assert got["order_id"] == "o-2"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (order(status="shipped"), "status"),
        (order(total=-1), "total"),
        (order(items=[]), "items"),
        (order(items=[{"product_id": "p1", "quantity": 0, "price": 1}]), "items[0].quantity"),
        (order(items=[{"product_id": "p1", "quantity": 1, "price": -1}]), "items[0].price"),
        (order(ordered_at="2037-11-30T10:00:00"), "ordered_at"),
        (order(ordered_at="yesterday"), "ordered_at"),
        (order(order_id="has space"), "order_id"),
        (order(email="not-an-email"), "email"),
        (order(coupon="X"), "coupon"),
    ],
)
async def test_bad_order_names_field_and_stores_nothing(
    client: TestClient[Any, Any], make_shop: Any, body: dict[str, Any], field: str
) -> None:
    shop = await make_shop()
    err = await error(await client.post(f"{BASE}/{shop.shop_id}/orders", json=body, headers=shop.auth))
    assert err["field"] == field
    assert await count(client, "orders") == 0 and await count(client, "customers") == 0


async def test_bulk_orders(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    url = f"{BASE}/{shop.shop_id}/orders/bulk"
    bodies = [order(f"o-{i}") for i in range(20)]
    assert await ok(await client.post(url, json={"orders": bodies}, headers=shop.auth)) == {
        "created": 20, "updated": 0, "unchanged": 0}
    bodies[0]["status"] = "cancelled"
    assert await ok(await client.post(url, json={"orders": bodies}, headers=shop.auth)) == {
        "created": 0, "updated": 1, "unchanged": 19}
    assert (await error(await client.post(url, json={"orders": [order(), order()]}, headers=shop.auth)))["field"] == "orders"
