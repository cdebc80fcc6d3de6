"""The reminders' state in the contact: the engine never writes `customers`, an order is cheap when nobody
was messaged, attribution follows the window, and an order landing while a worker holds the contact wins."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from storage.keys import customer_key
from tests.conftest import START
from tests.flows.reminders.conftest import World, days

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
    contact = await world.contact(U1)
    assert contact["shop_id"] == world.shop.shop_id and contact["line_user_id"] == U1 and contact["claim"] is None
    assert contact["flows"]["reminders"]["next_step"] == 1
    assert contact["next_due_at"] == contact["flows"]["reminders"]["due_at"] == START + days(7)
    assert [(e["flow"], e["status"], e["step"]) for e in contact["log"]] == [("reminders", "sent", 1)]
    index_names = {i["name"] async for i in await world.db["contacts"].list_indexes()}
    assert index_names == {"_id_", "contact_due"}  # each extra index costs every claim and settle


async def test_orders_without_a_message_are_cheap_and_change_nothing(world: World) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1")
    await world.customer(U2)
    await world.order(U2, "o-none", [("p1", 3000)], START)
    assert await world.contact(U2) == {}  # no contact is created by an order
    assert await conversions(world) == []


async def test_attribution_follows_the_window(world: World) -> None:
    await seed(world, U1)
    await world.run(START + days(3))
    await world.order(U1, "o-late", [("p1", 3000)], START + days(3) + timedelta(days=30))  # outside 7 days
    assert await conversions(world) == []
    assert (await world.reminder(U1))["status"] == "stopped"
    await world.order(U1, "o-in", [("p1", 4000)], START + days(4))  # a late-ingested earlier order
    assert [(c["order_id"], c["flow"], c["revenue"], c["step"], c["group"]) for c in await conversions(world)] == [
        ("o-in", "reminders", 4000, 1, "treated")]
    await world.order(U1, "o-in", [("p1", 4000)], START + days(4), status="refunded")
    assert await conversions(world) == []


async def test_an_order_while_a_worker_holds_the_contact_stops_the_cycle_and_keeps_the_send(world: World) -> None:
    await seed(world, U1)
    now = START + days(3)
    await world.sim.faults("push", latency_ms=1500)  # the push is in flight while the order lands
    run = asyncio.create_task(world.run(now))
    for _ in range(100):
        if (await world.contact(U1)).get("claim"):
            break
        await asyncio.sleep(0.02)
    await world.order(U1, "o-1", [("p1", 3000)], now + timedelta(minutes=1))
    summary = await run
    assert summary["sent"] == 1 and summary["settle_conflicts"] == 1
    contact = await world.contact(U1)
    reminder = contact["flows"]["reminders"]
    assert reminder["status"] == "stopped" and reminder["next_step"] == 0  # the order wins over the advance
    assert contact["claim"] is None and [e["status"] for e in contact["log"]] == ["sent"]
    # The order could not be attributed while the worker held the contact: the worker's outbox drain does it.
    assert await conversions(world) == []
    assert (await world.db.signals.drain(world.db, now + timedelta(minutes=2)))["redelivered"] == 1
    assert [c["order_id"] for c in await conversions(world)] == ["o-1"]
    # The send is remembered: a later order in the window is its conversion too.
    await world.order(U1, "o-2", [("p1", 5000)], now + days(1))
    assert {c["order_id"] for c in await conversions(world)} == {"o-1", "o-2"}
    assert (await world.run(now + days(7))).get("sent", 0) == 0


async def test_a_contact_without_its_customer_ends_without_a_send(world: World) -> None:
    await seed(world, U1)
    await world.db["customers"].delete_one({"_id": customer_key(world.shop.shop_id, U1)})
    summary = await world.run(START + days(3))
    assert summary.get("sent", 0) == 0 and summary["ended:unknown_customer"] == 1
    assert (await world.reminder(U1))["due_at"] is None and await world.pushes() == []
