"""Browse reminders end to end: the real app, database and linesim, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from linking.tracking import events_applied
from tests.conftest import START
from tests.flex_helpers import flex_texts as texts
from tests.flows.reminders.conftest import World, bubbles, days

U1 = "U" + "a" * 32
U2 = "U" + "b" * 32


async def test_view_then_reminder_with_labels_then_purchase_stops(world: World) -> None:
    await world.settings()
    await world.product("low", stock=2, category="bags")
    await world.product("plenty", stock=50, category="bags")
    await world.product("soldout", stock=0, category="bags")
    await world.product("hidden", published=False, category="bags")
    await world.product("similar", stock=9, category="bags", title="似た商品")
    await world.customer(U1)
    for pid, count in (("soldout", 5), ("low", 3), ("hidden", 2), ("plenty", 1)):
        await world.view(U1, pid, START, count=count)

    assert (await world.run(START + days(2.9))).get("sent", 0) == 0
    summary = await world.run(START + days(3))
    assert summary["sent"] == 1
    (push,) = await world.pushes(U1)
    cards = bubbles(push)
    assert [texts(b)[1:4] for b in cards] == [
        ["残りわずか!", "商品 low", "¥12,800"], ["おすすめ", "商品 plenty", "¥12,800"], ["おすすめ", "似た商品", "¥12,800"],
    ]
    assert "THANKYOU10" not in str(push)
    assert (await world.run(START + days(3))).get("sent", 0) == 0  # exactly once
    assert len(await world.pushes(U1)) == 1

    # The button goes through our redirect, which counts and forwards with UTM parameters.
    url = cards[0]["footer"]["contents"][0]["action"]["uri"]
    response = await world.client.get(urlsplit(url).path, allow_redirects=False)
    assert response.status == 302
    target = urlsplit(response.headers["Location"])
    assert target.netloc == "shop.example" and target.path == "/products/low"
    query = parse_qs(target.query)
    assert query["utm_source"] == ["line"] and query["utm_content"] == ["step1"] and query["ref"] == ["x"]

    await world.order(U1, "o-1", [("low", 12800)], START + days(4))
    assert (await world.reminder(U1))["status"] == "stopped"
    for later in (7, 14, 20):
        assert (await world.run(START + days(later))).get("sent", 0) == 0
    assert len(await world.pushes(U1)) == 1

    report = await world.report(**{"from": "2037-12-01", "to": "2037-12-31"})
    step1 = report["steps"][0]
    assert step1 == {"step": 1, "targeted": 1, "sent": 1, "skipped": {}, "failed": 0, "held": 0, "deferred": {},
                     "clicks": 1, "conversions": 1, "revenue": 12800}
    assert report["treated"]["customers"] == 1 and report["treated"]["conversions"] == 1
    assert report["holdout"] is None and report["lift"] is None  # no holdout set
    assert [s["step"] for s in report["steps"]] == [1, 2, 3]


async def test_all_steps_coupon_on_third_then_a_new_cycle_on_a_new_view(world: World) -> None:
    await world.settings(steps=[{"delay_days": 3}, {"delay_days": 7},
                                {"delay_days": 14, "title": "クーポンでお得", "coupon_code": "SPRING10",
                                 "coupon_text": "10%OFFクーポン"}])
    await world.product("p1")
    await world.customer(U1)
    await world.view(U1, "p1", START)
    for step_day in (3, 7, 14):
        assert (await world.run(START + days(step_day)))["sent"] == 1
    pushes = await world.pushes(U1)
    assert ["SPRING10" in str(p) for p in pushes] == [False, False, True]
    assert "クーポンでお得" in texts(bubbles(pushes[2])[0])
    assert (await world.reminder(U1))["status"] == "done"
    assert (await world.run(START + days(30))).get("sent", 0) == 0

    await world.view(U1, "p1", START + days(31))  # a new view after completion starts a new cycle
    assert (await world.run(START + days(33))).get("sent", 0) == 0
    assert (await world.run(START + days(34)))["sent"] == 1
    assert len({p["retry_key"] for p in await world.pushes(U1)}) == 4


async def test_quiet_hours_postpone_to_the_morning(world: World) -> None:
    await world.settings()
    await world.product("p1")
    await world.customer(U1)
    night_view = datetime(2037, 12, 1, 13, 30, tzinfo=UTC)  # 22:30 in Tokyo
    await world.view(U1, "p1", night_view)
    summary = await world.run(night_view + days(3))
    assert summary["deferred:quiet_hours"] == 1 and await world.pushes(U1) == []
    assert (await world.reminder(U1))["due_at"] == datetime(2037, 12, 5, 0, 0, tzinfo=UTC)  # 09:00 Tokyo
    assert (await world.contact(U1))["next_due_at"] == datetime(2037, 12, 5, 0, 0, tzinfo=UTC)
    assert (await world.run(datetime(2037, 12, 4, 23, 59, tzinfo=UTC))).get("sent", 0) == 0
    assert (await world.run(datetime(2037, 12, 5, 0, 0, tzinfo=UTC)))["sent"] == 1


async def test_suppression_and_skips_are_recorded_with_reasons(world: World) -> None:
    await world.settings()
    await world.product("p1")
    opted, bought, blocked = U1, U2, "U" + "c" * 32
    await world.customer(opted, opted_out=True)
    await world.customer(bought)
    await world.customer(blocked, blocked=True, friend=False)
    await world.order(bought, "o-early", [("p1", 5000)], START - days(1))
    for user in (opted, bought, blocked):
        await world.view(user, "p1", START)
    summary = await world.run(START + days(3))
    assert summary.get("sent", 0) == 0
    assert summary["skipped:opted_out"] == summary["skipped:recent_purchase"] == summary["skipped:blocked"] == 1
    assert await world.pushes() == []
    report = await world.report()
    assert report["steps"][0]["skipped"] == {"opted_out": 1, "recent_purchase": 1, "blocked": 1}
    assert (await world.reminder(opted))["next_step"] == 1  # the skipped step is not retried


async def test_linked_late_sends_only_the_latest_overdue_step(world: World) -> None:
    await world.settings()
    await world.product("p1")
    await world.customer(U1)
    await world.view(None, "p1", START, browser="anon")  # viewed before linking
    await world.db["product_views"].update_many({"browser_id": "anon"}, {"$set": {"line_user_id": U1}})
    await world.db.signals.browser_linked.send(world.db, world.shop.shop_id, "anon", U1, START + days(8),
                                               now=START + days(8))
    summary = await world.run(START + days(8))
    assert summary["sent"] == 1
    assert len(await world.pushes(U1)) == 1
    records = await world.records()
    assert [(d["step"], d["superseded_steps"]) for d in records] == [(2, [1])]
    assert (await world.run(START + days(14)))["sent"] == 1  # the last step still follows


async def test_out_of_stock_product_vanishes_between_steps(world: World) -> None:
    await world.settings()
    await world.product("p1")
    await world.product("p2")
    await world.customer(U1)
    await world.view(U1, "p1", START, count=2)
    await world.view(U1, "p2", START)
    await world.run(START + days(3))
    await world.product("p1", stock=0)
    await world.product("p2", published=False)
    summary = await world.run(START + days(7))
    assert summary["skipped:no_products"] == 1
    first, *rest = await world.pushes(U1)
    assert rest == [] and [texts(b)[2] for b in bubbles(first)] == ["商品 p1", "商品 p2"]


async def test_a_purchase_event_from_the_linked_browser_stops_the_cycle(world: World) -> None:
    await world.settings()
    await world.product("p1")
    await world.customer(U1)
    await world.client.put(f"/admin/api/v1/shops/{world.shop.shop_id}/settings/tracking",
                           json={"allowed_origins": ["https://shop.example"]}, headers=world.shop.auth)
    await world.db["browsers"].update_one({"_id": f"{world.shop.shop_id}:b-{U1}"},
                                          {"$set": {"shop_id": world.shop.shop_id, "browser_id": f"b-{U1}",
                                                    "line_user_id": U1}}, upsert=True)
    await world.view(U1, "p1", START)
    world.clock.set(START + days(1))
    response = await world.client.post(
        f"/t/{world.shop.shop_id}/events", headers={"Origin": "https://shop.example"},
        json={"event_id": "e-buy", "browser_id": f"b-{U1}", "type": "purchase", "url": "https://shop.example/thanks"})
    assert response.status == 204, await response.text()
    await events_applied(world.client.app)
    assert (await world.reminder(U1))["status"] == "stopped"
    assert (await world.run(START + days(3))).get("sent", 0) == 0


async def test_default_settings_send_no_coupon(world: World) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1")
    await world.customer(U1)
    await world.view(U1, "p1", START)
    for step_day in (3, 7, 14):
        assert (await world.run(START + days(step_day)))["sent"] == 1
    assert all("coupon" not in str(p).lower() and "クーポン" not in str(p) for p in await world.pushes(U1))
