"""The lean `reminder_state` collection: claims and settles never write `customers`, `last_sent_at`
survives a lost claim, and the order listener's cheap path still attributes every conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from storage.customers import customer_key
from storage.reminders import ReminderStateRepository, Settlement
from tests.conftest import START
from tests.flows.reminders.conftest import World, days, due_ids

U1 = "U" + "d" * 32
U2 = "U" + "e" * 32


async def seed(world: World, *users: str) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1")
    for user in users:
        await world.customer(user)
        await world.view(user, "p1", START)


async def conversions(world: World) -> list[dict[str, Any]]:
    return [doc async for doc in world.db["conversions"].find({})]


async def test_the_engine_leaves_customers_untouched(world: World) -> None:
    await seed(world, U1)
    key = customer_key(world.shop.shop_id, U1)
    before = await world.db["customers"].find_one({"_id": key})
    assert before is not None and "reminder" not in before
    assert (await world.run(START + days(3)))["sent"] == 1
    assert await world.db["customers"].find_one({"_id": key}) == before
    state = await world.reminder(U1)
    assert state["shop_id"] == world.shop.shop_id and state["line_user_id"] == U1
    assert state["last_sent_at"] == START + days(3) and state["next_step"] == 1 and state["claim"] is None
    index_names = {i["name"] async for i in await world.db["reminder_state"].list_indexes()}
    assert index_names == {"_id_", "reminder_due"}  # each extra index costs every claim and settle


async def test_orders_without_a_reminder_are_cheap_and_change_nothing(world: World) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1")
    await world.customer(U2)
    await world.order(U2, "o-none", [("p1", 3000)], START)
    assert await world.reminder(U2) == {}  # no state is created by an order
    assert await conversions(world) == []


async def test_attribution_follows_last_sent_at_and_the_window(world: World) -> None:
    await seed(world, U1)
    await world.run(START + days(3))
    await world.order(U1, "o-late", [("p1", 3000)], START + days(3) + timedelta(days=30))  # outside 7 days
    assert await conversions(world) == []
    assert (await world.reminder(U1))["status"] == "stopped"
    await world.order(U1, "o-in", [("p1", 4000)], START + days(4))  # a late-ingested earlier order
    assert [(c["order_id"], c["revenue"], c["step"]) for c in await conversions(world)] == [("o-in", 4000, 1)]


async def test_a_cycle_stopped_while_claimed_keeps_its_send_for_attribution(world: World) -> None:
    await seed(world, U1)
    repo = ReminderStateRepository(world.db)
    now, wall = START + days(3), datetime.now(UTC)
    (claimed,) = await repo.claim(await due_ids(repo, now), "w1", now, wall,
                                  wall + timedelta(minutes=5))
    cycle_id = claimed["reminder"]["cycle_id"]
    # The order lands while the worker is pushing: it stops the cycle and drops the claim.
    await world.order(U1, "o-1", [("p1", 3000)], now + timedelta(minutes=1))
    state = await world.reminder(U1)
    assert state["status"] == "stopped" and state["claim"] is None and state["sends_unsettled"] is True
    # The worker's settle loses (the order wins) but its push is still remembered.
    await repo.settle([Settlement(claimed["_id"], "w1", cycle_id, {"status": "active", "next_step": 1},
                                  sent_at=now)], now)
    state = await world.reminder(U1)
    assert state["status"] == "stopped" and state["next_step"] == 0 and state["last_sent_at"] == now
    # A delivery recorded by that worker is found for a later order (the flag keeps the query on).
    await world.db["deliveries"].insert_one({
        "_id": "d-1", "shop_id": world.shop.shop_id, "campaign": "reminders", "line_user_id": U1, "step": 1,
        "status": "sent", "sent_at": now, "at": now, "cycle_id": cycle_id})
    await world.order(U1, "o-2", [("p1", 5000)], now + days(1))
    assert {c["order_id"]: c["delivery_id"] for c in await conversions(world)}["o-2"] == "d-1"


async def test_a_state_without_its_customer_ends_without_a_send(world: World) -> None:
    await seed(world, U1)
    await world.db["customers"].delete_one({"_id": customer_key(world.shop.shop_id, U1)})
    summary = await world.run(START + days(3))
    assert summary.get("sent", 0) == 0 and summary["inactive"] == 1
    assert (await world.reminder(U1))["next_due_at"] is None and await world.pushes() == []
