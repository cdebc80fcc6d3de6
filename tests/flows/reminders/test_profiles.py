"""The reminder profile kept at ingest: idempotent view replays, link merges, purchases, bounds, indexes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.reminders.plan import catalogue_cursor
from flows.reminders.profile import VIEWS_KEEP, field_key, product_of, trim, views_from_rows
from flows.reminders.state import customer_orders_cursor, customer_views, customer_views_cursor
from linking.links import link_browser
from storage.contacts import ContactRepository
from storage.reminders import ReminderProfileRepository
from tests.conftest import START
from tests.flows.reminders.conftest import World, days

U1 = "U" + "1" * 32
U2 = "U" + "2" * 32


async def profile(world: World, user: str) -> dict[str, Any]:
    return await ReminderProfileRepository(world.db).get(world.shop.shop_id, user) or {}


def counts(doc: dict[str, Any]) -> dict[str, int]:
    return {product_of(k): v["c"] for k, v in (doc.get("views") or {}).items()}


async def test_view_entries_are_recomputed_so_replays_change_nothing(world: World) -> None:
    await world.settings()
    await world.product("p1")
    await world.customer(U1)
    await world.view(U1, "p1", START, count=2)
    await world.view(U1, "p1", START + days(1))
    assert counts(await profile(world, U1)) == {"p1": 3}
    for _ in range(3):  # the signal again (a retried request): the entry is read from the rows, not added to
        await world.db.signals.product_viewed.send(world.db, world.shop.shop_id, U1, "p1", START + days(1), now=START + days(1))
    entry = (await profile(world, U1))["views"]["p1"]
    assert entry["c"] == 3 and entry["f"] == START and entry["l"] == START + days(1)

    # A product ID with a dot is a valid catalogue ID; it is stored under an escaped key.
    await world.product("sku.2")
    await world.view(U1, "sku.2", START)
    assert counts(await profile(world, U1)) == {"p1": 3, "sku.2": 1}
    assert field_key("sku.2") in (await profile(world, U1))["views"]


async def test_linking_two_browsers_merges_their_views_and_a_moved_browser_leaves(world: World) -> None:
    await world.settings()
    for pid in ("p1", "p2"):
        await world.product(pid)
    await world.customer(U1, linked=False)
    await world.customer(U2, linked=False)
    await world.view(None, "p1", START, browser="phone", count=2)
    await world.view(None, "p1", START + days(1), browser="laptop", count=3)
    await world.view(None, "p2", START + timedelta(hours=1), browser="laptop")
    shop_id = world.shop.shop_id
    for _ in range(2):  # linking again (a repeated import) is a no-op
        await link_browser(world.db, shop_id, "phone", U1, "import", START + days(2))
        await link_browser(world.db, shop_id, "laptop", U1, "import", START + days(2))
    doc = await profile(world, U1)
    assert counts(doc) == {"p1": 5, "p2": 1}
    assert doc["views"]["p1"]["f"] == START and doc["views"]["p1"]["l"] == START + days(1)
    assert (await world.reminder(U1))["cycle_started_at"] == START  # anchored at the first view on any browser

    await link_browser(world.db, shop_id, "laptop", U2, "import", START + days(2))
    assert counts(await profile(world, U1)) == {"p1": 2}
    assert counts(await profile(world, U2)) == {"p1": 3, "p2": 1}


async def test_purchases_exclude_products_and_a_refund_gives_them_back(world: World) -> None:
    await world.settings(quiet_hours={"enabled": False}, recent_purchase_days=0)
    await world.product("p1")
    await world.product("p2")
    await world.customer(U1)
    await world.order(U1, "o-1", [("p1", 5000)], START - days(30))
    await world.order(U1, "o-2", [("p1", 5000), ("p2", 900)], START - days(20))
    bought = (await profile(world, U1))["bought"]
    assert bought == {"p1": START - days(20), "p2": START - days(20)}
    order = await world.db["orders"].find_one({"_id": f"{world.shop.shop_id}:o-2"})
    assert order is not None
    await world.db.signals.order_recorded.send(world.db, order, None, START, now=START)  # a replayed signal changes nothing
    assert (await profile(world, U1))["bought"] == bought

    await world.view(U1, "p1", START, count=4)
    await world.view(U1, "p2", START)
    preview = await dry_run(world, START + days(3))
    assert preview["excluded"] == [{"product_id": "p1", "reason": "bought_recently"},
                                   {"product_id": "p2", "reason": "bought_recently"}]

    await world.order(U1, "o-2", [("p1", 5000), ("p2", 900)], START - days(20), status="refunded")
    assert (await profile(world, U1))["bought"] == {"p1": START - days(30)}  # o-1 still counts for p1
    preview = await dry_run(world, START + days(3))
    assert [p["product_id"] for p in preview["products"]] == ["p2"]
    assert (await world.run(START + days(3)))["sent"] == 1


async def dry_run(world: World, at: datetime) -> dict[str, Any]:
    response = await world.client.get(f"/admin/api/v1/shops/{world.shop.shop_id}/reminders/dry-run",
                                      params={"line_user_id": U1, "at": at.isoformat()}, headers=world.shop.auth)
    assert response.status == 200, await response.text()
    return dict((await response.json())["now"])


def test_views_are_bounded_to_the_best_ranked() -> None:
    t0 = datetime(2037, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = [{"product_id": f"p{i}", "count": 1 + i % 7, "first_viewed_at": t0, "last_viewed_at": t0 + timedelta(minutes=i)}
            for i in range(VIEWS_KEEP + 10)]
    views = views_from_rows(rows)
    assert len(views) == VIEWS_KEEP
    ranked = sorted(rows, key=lambda r: (-r["count"], -r["last_viewed_at"].timestamp()))
    assert set(views) == {r["product_id"] for r in ranked[:VIEWS_KEEP]}
    views["new"] = {"c": 1, "f": t0, "l": t0 - timedelta(days=1)}  # the weakest entry falls out
    assert trim(views) == ["new"]


async def test_batch_and_ingest_queries_use_indexes(world: World) -> None:
    await world.settings()
    await world.product("p1")
    await world.customer(U1)
    await world.view(U1, "p1", START)
    shop_id, repo = world.shop.shop_id, ContactRepository(world.db)
    refs = [ref async for batch in repo.due_stream(START + days(3), None, 10) for ref in batch]
    assert [r.id for r in refs] == [f"{shop_id}:{U1}"]
    assert len(await customer_views(world.db, shop_id, U1)) == 1
    cursors = [
        ("contact_due", repo.due_cursor(START + days(3), 10)),
        ("shop_product", catalogue_cursor(world.db, shop_id)),
        ("_id_", world.db["reminder_profiles"].find({"_id": {"$in": [f"{shop_id}:{U1}", "x"]}})),
        ("_id_", world.db["customers"].find({"_id": {"$in": [f"{shop_id}:{U1}", "x"]}})),
        ("shop_line_user", customer_views_cursor(world.db, shop_id, U1)),
        ("line_user_id", customer_orders_cursor(world.db, shop_id, U1)),
    ]
    for index, cursor in cursors:
        plan = json.dumps(await cursor.explain(), default=str)
        assert "COLLSCAN" not in plan and "IXSCAN" in plan and index in plan, index
