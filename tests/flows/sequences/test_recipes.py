"""The seed's three recipes (seeds/002) end to end: the app, the embedded database and linesim, with an
injected clock. Each asserts which messages reach which customers and when, and that the goal stops
later steps.

The test clock starts on Tuesday 2037-12-01 10:00 in Tokyo (01:00 UTC).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tests.conftest import START
from tests.flows.sequences.conftest import World, days, hours, minutes, text

TOKYO = ZoneInfo("Asia/Tokyo")
A, B, C, D = ("U" + c * 32 for c in "abcd")


def jst(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=TOKYO)


async def newcomer(world: World, who: str, user: str, first_visit: datetime, **utm: str) -> None:
    """A first visit (not yet linked), then a follow and a link a few minutes later."""
    await world.visit(who, "/", first_visit, utm=utm or None)
    await world.follow(user, name=f"お客{who}", at=first_visit + minutes(1))
    await world.link(who, user, first_visit + minutes(2))


async def test_recipe_1_first_visit_then_50_hours_later_only_for_recent_visitors_goal_signup(world: World) -> None:
    await world.put_sequence("revisit", {
        "name": "初回訪問の50時間後に再訪問を促す",
        "trigger": {"event": "page_view"},
        "steps": [
            {"wait_minutes": 50 * 60, "filter": {"first_seen_within_days": 3},
             "messages": [text("{display_name}さん、先日はご来店ありがとうございました")]},
            {"wait_minutes": 2 * 24 * 60, "messages": [text("新作を入荷しました")]},
        ],
        "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "10:00", "end": "20:00"},
        "goal": {"event": "page_view", "url_contains": "/signup", "within_days": 14},
    })
    # A, C: first visit today; B: first visit 10 days ago; D: first visit tomorrow morning.
    await newcomer(world, "A", A, START)
    await newcomer(world, "B", B, START - days(10))
    await world.follow(B, name="お客B", at=START)
    await newcomer(world, "C", C, START)
    await newcomer(world, "D", D, jst("2037-12-02T05:50"))
    for who in "ABC":  # the trigger: a page view of a linked browser at 10:15 on Tuesday
        await world.visit(who, "/products/p1", jst("2037-12-01T10:15"))
    await world.visit("D", "/products/p1", jst("2037-12-02T06:00"))
    await world.visit("C", "/signup", jst("2037-12-01T11:00"))  # C reaches the goal before any message

    assert (await world.run(jst("2037-12-03T12:14"))).get("sent", 0) == 0
    await world.run(jst("2037-12-03T12:15"))  # 50 hours after 10:15 on Tuesday, inside the window
    assert await world.new_pushes() == [(A, ["お客Aさん、先日はご来店ありがとうございました"])]  # B: visited 12 days ago
    # D's wait ends at 08:00 on Friday, before the window opens: the message moves to 10:00.
    assert (await world.run(jst("2037-12-04T09:59")))["deferred:send_window"] == 1
    assert await world.new_pushes() == []
    await world.run(jst("2037-12-04T10:00"))
    assert await world.new_pushes() == [(D, ["お客Dさん、先日はご来店ありがとうございました"])]
    await world.visit("D", "/signup?from=line", jst("2037-12-04T12:00"))  # the goal, after the message

    # Step 2 falls due on Saturday (two days after step 1): the window moves it to Monday 10:00.
    await world.run(jst("2037-12-05T12:15"))
    await world.run(jst("2037-12-07T09:59"))
    assert await world.new_pushes() == []
    await world.run(jst("2037-12-07T10:00"))
    # B's first step was filtered out; the run went on to step 2. D reached the goal: no step 2. C: nothing.
    assert sorted(await world.new_pushes()) == [(A, ["新作を入荷しました"]), (B, ["新作を入荷しました"])]
    for later in (days(1), days(30)):
        await world.run(jst("2037-12-07T10:00") + later)
    assert await world.new_pushes() == []

    assert [(await world.run_state(u, "revisit"))["status"] for u in (A, B, C, D)] == ["done", "done", "goal", "goal"]
    report = await world.report("revisit", **{"from": "2037-12-01", "to": "2037-12-31"})
    step1, step2 = report["steps"]
    assert (step1["entered"], step1["sent"], step1["filtered"], step1["deferred"]) == (
        3, 2, {"first_seen_within_days": 1}, {"send_window": 1})
    assert (step2["entered"], step2["sent"], step2["filtered"], step2["deferred"]) == (2, 2, {}, {"send_window": 2})
    assert (report["entered"], report["goal_reached"], report["goal_reached_after_message"],
            report["conversions"]) == (4, 2, 1, 1)
    assert step1["conversions"] == 1 and report["holdout"] is None and report["lift"] is None


async def test_recipe_2_signup_tag_then_7_days_later_only_without_purchases_goal_purchase(world: World) -> None:
    await world.put_sequence("welcome", {
        "name": "会員登録の1週間後に購入を促す",
        "trigger": {"event": "tag_added", "tag": "会員"},
        "steps": [
            {"wait_minutes": 7 * 24 * 60, "filter": {"total_spent": {"max": 0}},
             "messages": [text("{display_name}さん、初回購入で使える{points}ポイントがあります")]},
            {"wait_minutes": 7 * 24 * 60, "filter": {"total_spent": {"max": 0}},
             "messages": [text("まだ間に合います")]},
        ],
        "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "09:00", "end": "21:00"},
        "goal": {"event": "purchase", "within_days": 30},
    })
    for user in (A, B, C, D):
        await world.follow(user, name=f"お客{user[1]}", at=START)
    # This shop's points are for the sequence's text only: no points notices (they default to on).
    notices = await world.client.put(world.api("/settings/points"), json={
        "earned_notice": False, "expiry_reminder": False}, headers=world.shop.auth)
    assert notices.status == 200, await notices.text()
    points = await world.client.post(world.api("/points/transactions"), json={
        "transaction_id": "t1", "line_user_id": A, "type": "earn", "amount": 500,
        "expires_at": (START + days(365)).isoformat()}, headers=world.shop.auth)
    assert points.status == 201, await points.text()
    await world.order(C, "o-c-old", 1000, START - days(40))  # C bought long ago: spent > 0
    # Sign-ups (the shop tags new members) on Tuesday 10:00; D never signs up.
    await world.tag([A, B, C], START, add=["会員"])
    await world.tag([A], START + hours(1), add=["会員"])  # the integration posts it again: nothing new
    await world.order(B, "o-b", 3200, START + days(3))  # B buys before the message: the goal, no message

    assert (await world.run(START + days(7) - minutes(1))).get("sent", 0) == 0
    await world.run(START + days(7))
    assert await world.new_pushes() == [(A, ["お客aさん、初回購入で使える500ポイントがあります"])]
    await world.order(A, "o-a", 5400, START + days(9))  # A buys two days after the message: a conversion
    await world.run(START + days(14))
    await world.run(START + days(40))
    assert await world.new_pushes() == []  # the goal stopped A's step 2; C is filtered again; D never entered

    assert [(await world.run_state(u, "welcome")).get("status") for u in (A, B, C, D)] == [
        "goal", "goal", "done", None]
    report = await world.report("welcome", **{"from": "2037-11-01", "to": "2038-01-31"})
    assert [(s["entered"], s["sent"], s["filtered"]) for s in report["steps"]] == [
        (2, 1, {"total_spent": 1}), (1, 0, {"total_spent": 1})]
    assert (report["entered"], report["goal_reached"], report["goal_reached_after_message"]) == (3, 2, 1)
    assert report["conversions"] == 1 and report["steps"][0]["revenue"] == 5400


async def test_recipe_3_first_visit_from_an_ad_utm_term_then_a_message_goal_page_view(world: World) -> None:
    await world.put_sequence("ad-term", {
        "name": "広告から来た方へ",
        "trigger": {"event": "page_view"},
        "steps": [
            {"wait_minutes": 3 * 60, "filter": {"utm": {"term": "Spring-Sale"}},
             "messages": [text("春のセールは今週末まで")]},
            {"wait_minutes": 24 * 60, "messages": [text("セール最終日です")]},
        ],
        "goal": {"event": "page_view", "within_days": 7},
    })
    await newcomer(world, "A", A, START, source="instagram", term="spring-sale")
    await newcomer(world, "B", B, START, source="instagram", term="winter")
    await newcomer(world, "C", C, START, source="instagram", term="spring-sale")
    for who in "ABC":
        await world.visit(who, "/products/p1", START + minutes(5))  # the trigger
    await world.visit("C", "/products/p2", START + hours(1))  # C came back before the message: goal

    await world.run(START + minutes(5) + hours(3) - minutes(1))
    assert await world.new_pushes() == []
    await world.run(START + minutes(5) + hours(3))
    assert await world.new_pushes() == [(A, ["春のセールは今週末まで"])]  # UTM term matches (case aside)
    await world.visit("A", "/products/p3", START + hours(6))  # A came back: the goal, a conversion
    await world.run(START + minutes(5) + hours(27))
    await world.run(START + days(10))
    # B (another term) skipped step 1 and got step 2; A and C reached the goal: no step 2 for them.
    assert await world.new_pushes() == [(B, ["セール最終日です"])]
    report = await world.report("ad-term")
    assert [(s["entered"], s["sent"], s["filtered"]) for s in report["steps"]] == [
        (2, 1, {"utm.term": 1}), (1, 1, {})]
    assert (report["entered"], report["goal_reached"], report["conversions"]) == (3, 2, 1)
