"""Broadcasts under the one delivery policy: holdout, the frequency cap across flows (both ways), clicks
through our redirect, conversions within the attribution window (treated and holdout), reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from delivery.policy import in_holdout
from storage.contacts import ContactRepository
from storage.keys import customer_key
from tests.conftest import START
from tests.flows.broadcasts.conftest import World, recipients, user
from tests.flows.reminders.conftest import World as ReminderWorld

BUTTON = [{"type": "flex", "altText": "冬のセール", "contents": {"type": "bubble", "body": {
    "type": "box", "layout": "vertical", "contents": [
        {"type": "text", "text": "冬のセール"},
        {"type": "button", "action": {"type": "uri", "label": "見る", "uri": "https://shop.example/sale?x=1"}}]}}}]


async def delivery_settings(world: World, **fields: Any) -> None:
    await world.call("PUT", "/settings/delivery", 200, json=fields)


async def order(world: World, line_user_id: str, order_id: str, at: Any, total: int = 5000) -> None:
    await world.call("POST", "/orders", 201, json={
        "order_id": order_id, "line_user_id": line_user_id, "status": "paid", "ordered_at": at.isoformat(),
        "items": [{"product_id": "p1", "quantity": 1, "price": total}], "total": total})


async def test_the_holdout_is_recorded_not_sent_and_conversions_give_the_lift(world: World) -> None:
    users = [user(i) for i in range(200)]
    await world.customers([world.customer_doc(u, tags=["vip"]) for u in users])
    await delivery_settings(world, holdout_percent=30)
    await world.segment("vip", {"tags_all": ["vip"]})
    await world.broadcast("sale", "vip", BUTTON)
    await world.run(START)
    held = {u for u in users if in_holdout(world.shop.shop_id, "broadcasts", u, 30)}
    assert 30 < len(held) < 90
    assert set(recipients(await world.multicasts())) == set(users) - held
    view = await world.get("sale")
    assert view["held"] == len(held) and view["sent"] == len(users) - len(held)

    # Orders within the window: one by a recipient, one by a held-out customer, one outside the window.
    treated, holdout = min(set(users) - held), min(held)
    await order(world, treated, "o1", START + timedelta(days=1), 8000)
    await order(world, holdout, "o2", START + timedelta(days=2), 3000)
    await order(world, sorted(set(users) - held)[1], "o3", START + timedelta(days=30))
    view = await world.get("sale")
    assert view["conversions"] == 1 and view["revenue"] == 8000
    report = await world.call("GET", "/reports/broadcasts", 200,
                              params={"from": "2037-11-30", "to": "2037-12-05", "broadcast_id": "sale"})
    assert report["flow"] == "broadcasts" and report["totals"]["sent"] == len(users) - len(held)
    assert report["totals"]["held"] == len(held) and report["totals"]["conversions"] == 1
    assert report["treated"]["customers"] == len(users) - len(held) and report["treated"]["conversions"] == 1
    assert report["holdout"]["customers"] == len(held) and report["holdout"]["conversions"] == 1
    assert report["lift"] is not None


async def test_clicks_go_through_our_redirect_and_count_for_the_broadcast(world: World) -> None:
    await world.customers([world.customer_doc(user(i), tags=["vip"]) for i in range(3)])
    await world.segment("vip", {"tags_all": ["vip"]})
    await world.broadcast("sale", "vip", BUTTON)
    await world.run(START)
    (multicast,) = await world.multicasts()
    link = multicast["messages"][0]["contents"]["body"]["contents"][1]["action"]["uri"]
    assert link.startswith("http://shop-bot.test/r/")
    stored = await world.get("sale")
    assert stored["messages"] == BUTTON  # what the merchant posted is what they read back
    response = await world.client.get(urlsplit(link).path, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith("https://shop.example/sale?x=1&utm_source=line")
    assert "utm_campaign=broadcasts" in response.headers["Location"]
    assert (await world.get("sale"))["clicks"] == 1
    report = await world.call("GET", "/reports/broadcasts", 200, params={"from": "2037-11-30", "to": "2037-12-05"})
    assert report["totals"]["clicks"] == 1 and report["totals"]["sent"] == 3


async def test_a_customer_at_their_cap_is_skipped_and_broadcast_sends_count_toward_other_flows(
        world: World) -> None:
    await delivery_settings(world, frequency_cap={"per_day": 1})
    capped, fresh = user(1), user(2)
    await world.customers([world.customer_doc(u, tags=["vip"]) for u in (capped, fresh)])
    # `capped` got a reminder an hour ago (the contact keeps every flow's sends).
    await world.db["contacts"].insert_one({"_id": customer_key(world.shop.shop_id, capped), "shop_id": world.shop.shop_id,
                                           "line_user_id": capped, "flows": {}, "next_due_at": START + timedelta(days=999),
                                           "sent": [{"at": START - timedelta(hours=1), "flow": "reminders"}], "v": 1})
    await world.segment("vip", {"tags_all": ["vip"]})
    await world.broadcast("sale", "vip")
    summary = await world.run(START)
    assert recipients(await world.multicasts()) == [fresh]
    assert summary["skipped:frequency_cap"] == 1
    assert (await world.get("sale"))["skipped"] == {"frequency_cap": 1}

    # The other way: `fresh` got the broadcast, so their browse reminder due now waits for the cap.
    reminders = ReminderWorld(world.client, world.shop, world.clock, world.sim)
    await reminders.settings(quiet_hours={"enabled": False})
    await reminders.product("p1")
    await world.db["customers"].update_one({"line_user_id": fresh}, {"$set": {"browser_ids": ["b-x"]}})
    await reminders.view(fresh, "p1", START - timedelta(days=3))
    ran = await reminders.run(START + timedelta(hours=1))
    assert ran.get("sent", 0) == 0 and ran["deferred:frequency_cap"] == 1
    state = (await ContactRepository(world.db).get(world.shop.shop_id, fresh) or {})["flows"]["reminders"]
    assert state["due_at"] == START + timedelta(days=1)  # when the broadcast leaves the 24 hours
    ran = await reminders.run(START + timedelta(days=1, minutes=1))
    assert ran["sent"] == 1
