import asyncio
from datetime import UTC, datetime
from typing import Any, Self

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from storage.orders import OrderRepository, plan_batch
from tests.admin_api.helpers import BASE, count, error, ok, order, product


async def customer(client: TestClient[web.Request, web.Application], shop_id: str, user: str) -> dict[str, Any]:
    doc = await client.app[DATABASE]["customers"].find_one({"_id": f"{shop_id}:{user}"})
    assert doc is not None
    return doc


async def sold(client: TestClient[web.Request, web.Application], shop_id: str, product_id: str) -> int:
    doc = await client.app[DATABASE]["products"].find_one({"_id": f"{shop_id}:{product_id}"})
    assert doc is not None
    return int(doc["sold_count"])


async def test_same_order_twice_is_one_and_refund_reverses(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    await ok(await client.put(f"{BASE}/{shop.shop_id}/products/p1", json=product(), headers=shop.auth), 201)
    url = f"{BASE}/{shop.shop_id}/orders"
    calls: list[tuple[Any, Any]] = []

    async def listener(db: Any, doc: Any, previous: Any, now: Any) -> None:
        calls.append((doc["status"], previous and previous["status"]))

    signals = client.app[DATABASE].signals
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
        signals.order_recorded.disconnect(listener)


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


# --- batched ingest: one transaction per batch, summed differences, version-guarded writes ---


class SignalLog:
    """Captures `order_recorded` as (order_id, status, previous status) while connected."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        self.signals = client.app[DATABASE].signals

    async def __call__(self, db: Any, doc: Any, previous: Any, now: Any) -> None:
        self.calls.append((doc["order_id"], doc["status"], previous and previous["status"]))

    def __enter__(self) -> Self:
        self.signals.order_recorded.connect(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.signals.order_recorded.disconnect(self)


async def assert_aggregates_match_orders(client: TestClient[Any, Any], shop_id: str) -> None:
    """Customer totals and sold counts equal what the stored orders add up to (no half or double applies)."""
    db = client.app[DATABASE]
    expected: dict[str, tuple[int, int]] = {}
    sold_expected: dict[str, int] = {}
    async for doc in db["orders"].find({"shop_id": shop_id}):
        if doc["status"] == "paid" and doc["line_user_id"]:
            count, spend = expected.get(doc["line_user_id"], (0, 0))
            expected[doc["line_user_id"]] = (count + 1, spend + doc["total"])
            for item in doc["items"]:
                sold_expected[item["product_id"]] = sold_expected.get(item["product_id"], 0) + item["quantity"]
    async for doc in db["customers"].find({"shop_id": shop_id}):
        totals = doc["totals"]
        assert (totals["purchase_count"], totals["total_spend"]) == expected.get(doc["line_user_id"], (0, 0))
    async for doc in db["products"].find({"shop_id": shop_id}):
        assert doc.get("sold_count", 0) == sold_expected.get(doc["product_id"], 0), doc["product_id"]


def mixed_orders(n: int, status: str = "paid") -> list[dict[str, Any]]:
    return [
        order(f"o-{i}", line_user_id=f"U{i % 4}", status=status, total=1000 * (1 + i % 3),
              items=[{"product_id": f"p{i % 3}", "quantity": 1 + i % 2, "price": 1000},
                     {"product_id": "p0", "quantity": 1, "price": 500}],
              ordered_at=f"2037-11-{1 + i % 28:02d}T00:00:00Z")
        for i in range(n)
    ]


async def put_products(client: TestClient[Any, Any], shop: Any, count_: int = 3) -> None:
    for i in range(count_):
        await ok(await client.put(f"{BASE}/{shop.shop_id}/products/p{i}", json=product(), headers=shop.auth), 201)


async def test_bulk_replay_and_status_changes_apply_each_difference_once(
    client: TestClient[Any, Any], make_shop: Any
) -> None:
    shop = await make_shop()
    await put_products(client, shop)
    url = f"{BASE}/{shop.shop_id}/orders/bulk"
    bodies = mixed_orders(30)
    with SignalLog(client) as log:
        assert await ok(await client.post(url, json={"orders": bodies}, headers=shop.auth)) == {
            "created": 30, "updated": 0, "unchanged": 0}
        assert await ok(await client.post(url, json={"orders": bodies}, headers=shop.auth)) == {
            "created": 0, "updated": 0, "unchanged": 30}
        assert log.calls == [(f"o-{i}", "paid", None) for i in range(30)]
        await assert_aggregates_match_orders(client, shop.shop_id)
        u1 = (await customer(client, shop.shop_id, "U1"))["totals"]
        assert u1["last_purchase_at"].isoformat().startswith("2037-11-26")  # o-25, the newest of U1's orders

        log.calls.clear()
        for i in (1, 5, 25):  # U1's newest purchase (o-25) is refunded: last_purchase_at falls back
            bodies[i]["status"] = "refunded"
        bodies[2]["status"] = "cancelled"
        bodies[3]["total"] = 99  # a changed amount on a paid order moves spend only
        changes = {"created": 0, "updated": 5, "unchanged": 25}
        assert await ok(await client.post(url, json={"orders": bodies}, headers=shop.auth)) == changes
        assert await ok(await client.post(url, json={"orders": bodies}, headers=shop.auth)) == {
            "created": 0, "updated": 0, "unchanged": 30}
    assert sorted(log.calls) == sorted([("o-1", "refunded", "paid"), ("o-5", "refunded", "paid"),
                                        ("o-25", "refunded", "paid"), ("o-2", "cancelled", "paid"),
                                        ("o-3", "paid", "paid")])
    await assert_aggregates_match_orders(client, shop.shop_id)
    u1 = (await customer(client, shop.shop_id, "U1"))["totals"]
    assert u1["last_purchase_at"].isoformat().startswith("2037-11-22")  # o-21 is now U1's newest paid order
    assert await count(client, "orders", {"shop_id": shop.shop_id}) == 30


def stored_fields(status: str = "paid", user: str | None = "U1", quantity: int = 2) -> dict[str, Any]:
    return {"line_user_id": user, "customer_id": None, "browser_id": None, "email": None,
            "items": [{"product_id": "p0", "variant_id": None, "quantity": quantity, "price": 1000}],
            "total": 1000 * quantity, "status": status, "ordered_at": datetime(2037, 11, 1, tzinfo=UTC),
            "cart_token": None}


async def test_an_order_id_twice_in_one_batch_applies_in_turn(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    await put_products(client, shop, 1)
    repository = OrderRepository(client.app[DATABASE])
    now = datetime(2037, 12, 1, tzinfo=UTC)
    batch = [("o-1", stored_fields()), ("o-1", stored_fields()), ("o-1", stored_fields("refunded")),
             ("o-2", stored_fields(quantity=3)), ("o-2", stored_fields(user="U2", quantity=3))]
    with SignalLog(client) as log:
        recorded = await repository.record_many(shop.shop_id, batch, now)
        assert [r.outcome for r in recorded] == ["created", "unchanged", "updated", "created", "updated"]
        assert log.calls == [("o-1", "paid", None), ("o-1", "refunded", "paid"), ("o-2", "paid", None),
                             ("o-2", "paid", "paid")]
        replay = await repository.record_many(shop.shop_id, batch, now)
        # replayed over the stored versions: the first two entries now change o-1 back and forth again
        assert [r.outcome for r in replay] == ["updated", "unchanged", "updated", "updated", "updated"]
    assert (await repository.get(shop.shop_id, "o-1"))["status"] == "refunded"  # type: ignore[index]
    assert (await repository.get(shop.shop_id, "o-2"))["line_user_id"] == "U2"  # type: ignore[index]
    assert await count(client, "orders") == 2
    await assert_aggregates_match_orders(client, shop.shop_id)
    assert await sold(client, shop.shop_id, "p0") == 3
    assert (await customer(client, shop.shop_id, "U1"))["totals"]["purchase_count"] == 0


async def test_concurrent_bulk_posts_of_overlapping_orders_keep_totals_exact(
    client: TestClient[Any, Any], make_shop: Any
) -> None:
    shop = await make_shop()
    await put_products(client, shop)
    url = f"{BASE}/{shop.shop_id}/orders/bulk"
    bodies = mixed_orders(60)
    requests = [bodies[:40], bodies[:40], bodies[20:], bodies[20:], bodies[10:50]]
    with SignalLog(client) as log:
        results = await asyncio.gather(*[client.post(url, json={"orders": r}, headers=shop.auth) for r in requests])
        counts = [await ok(result) for result in results]
        assert sum(c["created"] for c in counts) == 60 and sum(c["updated"] for c in counts) == 0
        assert sorted(log.calls) == sorted((f"o-{i}", "paid", None) for i in range(60))
        log.calls.clear()
        refunds = [dict(body, status="refunded") for body in bodies[:30]]
        results = await asyncio.gather(*[client.post(url, json={"orders": r}, headers=shop.auth)
                                         for r in (refunds, refunds[::-1], refunds[5:])])
        assert sum([(await ok(result))["updated"] for result in results]) == 30
    assert sorted(log.calls) == sorted((f"o-{i}", "refunded", "paid") for i in range(30))
    assert await count(client, "orders") == 60
    await assert_aggregates_match_orders(client, shop.shop_id)


class InterruptedRepository(OrderRepository):
    """Lets another writer change the batch's order after the batch was planned, once."""

    def __init__(self, database: Any, intruder: Any) -> None:
        super().__init__(database)
        self.intruder = intruder
        self.writes = 0

    async def _write(self, *args: Any) -> None:
        self.writes += 1
        if self.intruder is not None:
            intruder, self.intruder = self.intruder, None
            await intruder()
        await super()._write(*args)


@pytest.mark.parametrize("exists", [True, False])
async def test_a_writer_between_plan_and_commit_makes_the_batch_replan(
    client: TestClient[Any, Any], make_shop: Any, exists: bool
) -> None:
    shop = await make_shop()
    await put_products(client, shop, 1)
    db = client.app[DATABASE]
    now = datetime(2037, 12, 1, tzinfo=UTC)
    if exists:
        await OrderRepository(db).record(shop.shop_id, "o-1", stored_fields(), now)
    wanted = stored_fields("refunded" if exists else "paid")

    async def intruder() -> None:  # e.g. a concurrent request recording the same change first
        await OrderRepository(db).record(shop.shop_id, "o-1", wanted, now)

    repository = InterruptedRepository(db, intruder)
    with SignalLog(client) as log:
        (recorded,) = await repository.record_many(shop.shop_id, [("o-1", wanted)], now)
    # the first plan's write was refused; the re-plan found the intruder's version, so nothing more to do
    assert recorded.outcome == "unchanged" and repository.writes == 1
    assert log.calls == [("o-1", wanted["status"], "paid" if exists else None)]  # only the intruder's change
    await assert_aggregates_match_orders(client, shop.shop_id)
    assert (await customer(client, shop.shop_id, "U1"))["totals"]["purchase_count"] == (0 if exists else 1)


async def test_an_order_stored_before_versions_updates_once(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    await put_products(client, shop, 1)
    db = client.app[DATABASE]
    now = datetime(2037, 12, 1, tzinfo=UTC)
    await OrderRepository(db).record(shop.shop_id, "o-1", stored_fields(), now)
    await db["orders"].update_one({"_id": f"{shop.shop_id}:o-1"}, {"$unset": {"version": ""}})
    recorded = await OrderRepository(db).record(shop.shop_id, "o-1", stored_fields("refunded"), now)
    assert recorded.outcome == "updated" and recorded.order["version"] == 1
    await assert_aggregates_match_orders(client, shop.shop_id)


async def test_bulk_resolves_every_identity_in_one_pass(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    db = client.app[DATABASE]
    await db["browsers"].insert_many([
        {"_id": f"{shop.shop_id}:b{i}", "shop_id": shop.shop_id, "browser_id": f"b{i}", "line_user_id": f"Ub{i}"}
        for i in range(3)])
    await ok(await client.post(f"{BASE}/{shop.shop_id}/customers/mappings",
                               json={"mappings": [{"shop_customer_id": "c-9", "line_user_id": "Ucust"}]},
                               headers=shop.auth))
    bodies = [order(f"o-b{i}", line_user_id=None, browser_id=f"b{i}") for i in range(3)] + [
        order("o-c", line_user_id=None, customer_id="c-9"),
        order("o-bc", line_user_id=None, browser_id="unlinked", customer_id="c-9"),
        order("o-u", line_user_id="Ugiven", browser_id="b0"),
        order("o-n", line_user_id=None, email="nobody@example.jp"),
    ]
    await ok(await client.post(f"{BASE}/{shop.shop_id}/orders/bulk", json={"orders": bodies}, headers=shop.auth))
    users = {doc["order_id"]: doc["line_user_id"] async for doc in db["orders"].find({"shop_id": shop.shop_id})}
    assert users == {"o-b0": "Ub0", "o-b1": "Ub1", "o-b2": "Ub2", "o-c": "Ucust", "o-bc": "Ucust",
                     "o-u": "Ugiven", "o-n": None}


async def test_previous_versions_are_read_by_id(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    keys = [f"{shop.shop_id}:o-{i}" for i in range(3)]
    plan = str(await client.app[DATABASE]["orders"].find({"_id": {"$in": keys}}).explain())
    assert "COLLSCAN" not in plan and ("IXSCAN" in plan or "IDHACK" in plan or "EXPRESS" in plan), plan


def test_plan_sums_differences_per_customer_and_product() -> None:
    """Pure: a batch writes one increment per customer and per product, whatever the number of orders."""
    now = datetime(2037, 12, 1, tzinfo=UTC)
    stored = {"s:o-old": {"_id": "s:o-old", "shop_id": "s", "order_id": "o-old", **stored_fields(quantity=4),
                          "version": 3}}
    later = dict(stored_fields(quantity=1), ordered_at=datetime(2037, 11, 20, tzinfo=UTC))
    plan = plan_batch("s", [("o-a", stored_fields()), ("o-b", later), ("o-old", stored_fields("refunded"))],
                      stored, now)
    assert [r.outcome for r in plan.recorded] == ["created", "created", "updated"]
    assert [o["order_id"] for o in plan.inserts] == ["o-a", "o-b"]
    assert [(o["version"], version) for o, version in plan.replaces] == [(4, 3)]
    change = plan.customers["U1"]
    assert (change.purchases, change.spend, change.recompute_latest) == (1, -1000, True)  # +2 paid, -1 refunded
    assert dict(plan.quantities) == {"p0": -1}  # +2 +1 -4
