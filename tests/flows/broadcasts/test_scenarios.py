"""Broadcast scenarios through the app, the embedded database and linesim: segment → preview → broadcast →
multicasts of ≤ 500 covering the segment once; the policy at send time; validation of what is posted."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from storage.customers import CustomerRepository
from tests.conftest import START
from tests.flows.broadcasts.conftest import World, recipients, user

PLAN_A = "subscription-123-plan:定期便A"


async def seed_shop(world: World, n: int = 1234) -> set[str]:
    """n customers; the segment "plan A (or B) subscribers who spent ≥ 10,000 yen" is every third with
    spend, minus the blocked, opted-out and non-friends among them. Returns who should get it."""
    docs, expected = [], set()
    for i in range(n):
        plan = "subscription-123-plan:定期便A" if i % 3 == 0 else "subscription-456-plan:定期便B" if i % 3 == 1 else None
        spend = 15_000 if i % 4 != 3 else 5_000
        blocked, opted_out, friend = i % 50 == 7, i % 61 == 5, i % 73 != 11
        tags = [plan] if plan else ["newsletter"]
        docs.append(world.customer_doc(user(i), tags=tags, spend=spend, purchases=2, blocked=blocked,
                                       opted_out=opted_out, friend=friend))
        if plan and spend >= 10_000 and not blocked and not opted_out and friend:
            expected.add(user(i))
    await world.customers(docs)
    return expected


SEGMENT = {"tags_any": ["subscription-123-plan:定期便A", "subscription-456-plan:定期便B"],
           "total_spent": {"min": 10_000}}


async def test_a_segment_over_tags_and_spend_goes_out_in_multicasts_of_at_most_500_covering_it_once(
        world: World) -> None:
    expected = await seed_shop(world)
    await world.segment("subs", SEGMENT)
    preview = await world.preview("subs")
    assert preview["count"] == len(expected) > 500
    assert set(preview["sample"]) <= expected and len(preview["sample"]) == 10

    created = await world.broadcast("winter-sale", "subs")
    assert created == {"broadcast_id": "winter-sale", "status": "scheduled", "targeted": len(expected)}
    assert (await world.get("winter-sale"))["status"] == "scheduled"

    summary = await world.run(START)
    multicasts = await world.multicasts()
    assert all(1 <= len(m["to"]) <= 500 for m in multicasts)
    sent = recipients(multicasts)
    assert Counter(sent) == Counter(expected)  # everyone in the segment exactly once, nobody else
    assert len({m["retry_key"] for m in multicasts}) == len(multicasts)
    assert all(m["messages"] == [{"type": "text", "text": "冬のセールのお知らせ"}] for m in multicasts)
    assert summary["start:frozen"] == len(expected) and summary["sent"] == len(expected)

    view = await world.get("winter-sale")
    assert view["status"] == "done" and view["sent"] == view["targeted"] == len(expected)
    assert view["batches"] == view["batches_done"] == len(multicasts) and view["failed"] == view["held"] == 0
    # A later run sends nothing more; the same broadcast ID again is the same broadcast.
    assert (await world.run(START + timedelta(minutes=10))).get("sent", 0) == 0
    again = await world.broadcast("winter-sale", "subs", expect=200)
    assert again == {"broadcast_id": "winter-sale", "status": "done", "targeted": len(expected)}
    assert len(await world.multicasts()) == len(multicasts)
    listed = await world.call("GET", "/broadcasts", 200)
    assert [b["broadcast_id"] for b in listed["items"]] == ["winter-sale"] and listed["next_after"] is None


async def test_a_scheduled_broadcast_waits_for_send_at_and_freezes_the_audience_then(world: World) -> None:
    await world.customers([world.customer_doc(user(i), tags=["vip"]) for i in range(3)])
    await world.segment("vip", {"tags_all": ["vip"]})
    at = START + timedelta(hours=2)
    await world.broadcast("later", "vip", send_at=at.isoformat())
    assert (await world.run(START + timedelta(hours=1))) == {}
    assert await world.multicasts() == []
    # Joins before the moment: in the audience; blocks before it: not.
    await world.customers([world.customer_doc(user(3), tags=["vip"])])
    await world.db["customers"].update_one({"line_user_id": user(0)}, {"$set": {"blocked": True, "friend": False}})
    await world.run(at)
    (multicast,) = await world.multicasts()
    assert sorted(multicast["to"]) == [user(1), user(2), user(3)]
    view = await world.get("later")
    assert view["targeted"] == 3 and view["sent"] == 3 and view["started_at"] is not None


async def test_customers_who_block_or_opt_out_after_the_freeze_are_skipped_at_send_time(world: World) -> None:
    await world.customers([world.customer_doc(user(i), tags=["vip"]) for i in range(4)])
    await world.segment("vip", {"tags_all": ["vip"]})
    await world.broadcast("b1", "vip")
    assert (await world.start(START))["frozen"] == 4
    later = START + timedelta(seconds=30)
    repo = CustomerRepository(world.db)
    await repo.record_unfollow(world.shop.shop_id, user(0), later)
    await repo.set_opted_out(world.shop.shop_id, user(1), True, later)
    await repo.set_opted_out(world.shop.shop_id, user(2), True, later)  # and back: reachable again
    await repo.set_opted_out(world.shop.shop_id, user(2), False, later)
    summary = await world.send(later + timedelta(seconds=1))
    (multicast,) = await world.multicasts()
    assert sorted(multicast["to"]) == [user(2), user(3)]
    assert summary["skipped:blocked"] == 1 and summary["skipped:opted_out"] == 1
    view = await world.get("b1")
    assert view["sent"] == 2 and view["skipped"] == {"blocked": 1, "opted_out": 1} and view["status"] == "done"


async def test_what_line_would_refuse_is_refused_when_posted_with_its_field(world: World) -> None:
    await world.segment("all", {})
    bad: list[tuple[list[dict[str, Any]], str]] = [
        ([{"type": "text"}], "messages[0].text"),
        ([{"type": "text", "text": "x" * 5001}], "messages[0].text"),
        ([{"type": "flex", "altText": "a", "contents": {"type": "bubble", "body": {
            "type": "box", "layout": "diagonal", "contents": []}}}], "messages[0].contents.body.layout"),
        ([{"type": "text", "text": "a"}] * 6, "messages"),
        ([], "messages"),
    ]
    for messages, field in bad:
        body = await world.call("POST", "/broadcasts", 422,
                                json={"broadcast_id": "b", "segment_id": "all", "messages": messages})
        assert body["error"]["field"] == field, body
    body = await world.call("POST", "/broadcasts", 422,
                            json={"broadcast_id": "b", "segment_id": "nope", "messages": [{"type": "text", "text": "a"}]})
    assert body["error"]["field"] == "segment_id"
    body = await world.call("POST", "/broadcasts", 422, json={"broadcast_id": "b", "segment_id": "all",
                                                               "messages": [{"type": "text", "text": "a"}],
                                                               "send_at": "2037-12-01T10:00:00"})
    assert body["error"]["field"] == "send_at"
    assert await world.db["broadcasts"].count_documents({}) == 0
    await world.broadcast("b", "all")
    conflict = await world.call("POST", "/broadcasts", 409, json={"broadcast_id": "b", "segment_id": "all",
                                                                  "messages": [{"type": "text", "text": "other"}]})
    assert conflict["error"]["field"] == "broadcast_id"
    await world.call("GET", "/broadcasts/nope", 404)
    await world.call("POST", "/broadcasts/nope/cancel", 404)
