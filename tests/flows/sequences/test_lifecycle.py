"""A sequence's life through the app: edits apply to steps not yet sent, deleting stops every run,
switching off, `reentry`, every trigger kind, blocked customers, the holdout, the dry run."""

from __future__ import annotations

from typing import Any

from tests.conftest import START
from tests.flows.sequences.conftest import World, days, hours, minutes, text

A, B, C = ("U" + c * 32 for c in "abc")
USERS = [f"U{i:032x}" for i in range(1, 21)]


def two_steps(first: str = "1通目", second: str = "2通目", *, waits: tuple[int, int] = (60, 24 * 60),
              trigger: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": "テスト", "trigger": trigger or {"event": "follow"}, **fields,
            "steps": [{"wait_minutes": waits[0], "messages": [text(first)]},
                      {"wait_minutes": waits[1], "messages": [text(second)]}]}


async def test_an_edit_applies_to_every_step_not_yet_sent(world: World) -> None:
    await world.put_sequence("s", two_steps())
    await world.follow(A, at=START)
    await world.follow(B, at=START + minutes(30))
    await world.run(START + hours(1))
    assert await world.new_pushes() == [(A, ["1通目"])]
    # Step 1 now waits 2 hours (B has not had it), step 2 only 2 hours (A waits for it) and says something else.
    await world.put_sequence("s", two_steps(second="2通目(改)", waits=(120, 120)), status=200)
    await world.run(START + hours(1) + minutes(30))  # B's old due time: it waits longer now
    await world.run(START + hours(2) + minutes(29))
    assert await world.new_pushes() == []
    await world.run(START + hours(2) + minutes(30))
    assert await world.new_pushes() == [(B, ["1通目"])]
    await world.run(START + hours(3))  # A's step 2: two hours after step 1, not a day
    assert await world.new_pushes() == [(A, ["2通目(改)"])]
    await world.run(START + hours(4) + minutes(30))
    assert await world.new_pushes() == [(B, ["2通目(改)"])]
    await world.run(START + days(3))
    assert await world.new_pushes() == []


async def test_deleting_stops_every_run_and_a_new_sequence_under_the_same_id_starts_afresh(world: World) -> None:
    await world.put_sequence("s", two_steps())
    for user in (A, B):
        await world.follow(user, at=START)
    await world.run(START + hours(1))
    assert len(await world.new_pushes()) == 2
    assert await world.delete_sequence("s") == 204
    summary = await world.run(START + days(2))
    assert await world.new_pushes() == [] and summary["ended:deleted"] == 2
    assert [(await world.run_state(u, "s"))["end_reason"] for u in (A, B)] == ["deleted", "deleted"]
    await world.follow(C, at=START + days(2))  # nobody enters a deleted sequence
    assert await world.run_state(C, "s") == {}

    await world.put_sequence("s", two_steps("新1通目", "新2通目"), status=201)
    await world.unfollow(A, at=START + days(3))
    await world.follow(A, at=START + days(3))  # `reentry: false`, but this is a new sequence
    await world.run(START + days(3) + hours(1))
    assert await world.new_pushes() == [(A, ["新1通目"])]


async def test_switching_off_stops_entries_and_ends_runs_at_their_next_step(world: World) -> None:
    await world.put_sequence("s", two_steps())
    await world.follow(A, at=START)
    await world.put_sequence("s", {**two_steps(), "enabled": False})
    await world.follow(B, at=START)
    summary = await world.run(START + hours(1))
    assert await world.new_pushes() == [] and summary["ended:disabled"] == 1
    assert (await world.run_state(A, "s"))["status"] == "ended" and await world.run_state(B, "s") == {}


async def test_reentry_after_a_finished_run(world: World) -> None:
    await world.put_sequence("again", {**two_steps("また会えました", "その後いかが", waits=(10, 10)), "reentry": True})
    await world.put_sequence("once", {**two_steps("初回のみ", "初回のみ2", waits=(10, 10))})
    await world.follow(A, at=START)
    await world.follow(A, at=START + minutes(5))  # a second follow during the run: ignored
    await world.run(START + minutes(10))
    await world.run(START + minutes(20))
    first = await world.new_pushes()
    assert sorted(first) == sorted([(A, ["また会えました"]), (A, ["初回のみ"]), (A, ["初回のみ2"]), (A, ["その後いかが"])])
    await world.unfollow(A, at=START + days(1))
    await world.follow(A, at=START + days(2))  # back as a friend: a new run of "again" only
    await world.run(START + days(2) + minutes(10))
    await world.run(START + days(2) + minutes(20))
    assert await world.new_pushes() == [(A, ["また会えました"]), (A, ["その後いかが"])]


async def test_every_trigger_kind(world: World) -> None:
    for user in (A, B, C):
        await world.follow(user, at=START)
    await world.put_sequence("link", two_steps("連携ありがとう", trigger={"event": "link"}))
    await world.put_sequence("cart", two_steps("カートに商品が", trigger={"event": "add_to_cart", "product_id": "p9"}))
    await world.put_sequence("buy", two_steps("ご購入ありがとう", trigger={"event": "purchase"}))
    await world.put_sequence("product", two_steps("p7をご覧の方へ", trigger={"event": "page_view", "product_id": "p7"}))
    at = START + minutes(10)
    await world.link("A", A, at)
    await world.visit("A", "/products/p9", at, kind="add_to_cart", product_id="p9", cart_token="c1", quantity=1)
    await world.visit("A", "/products/p8", at, product_id="p8")  # another product: not the trigger
    await world.link("B", B, at)
    await world.visit("B", "/products/p7", at, product_id="p7")
    await world.visit("B", "/thanks", at, kind="purchase", order_id="o-b", value=3000)  # the browser's purchase
    await world.order(C, "o-c", 5000, at)  # the shop's order (C has no browser)
    await world.order(C, "o-old", 5000, START - days(30))  # an imported old order starts nothing
    await world.visit("X", "/products/p9", at, kind="add_to_cart", product_id="p9")  # nobody we know
    await world.run(at + hours(1))
    assert sorted(await world.new_pushes()) == sorted([
        (A, ["カートに商品が"]), (A, ["連携ありがとう"]), (B, ["p7をご覧の方へ"]), (B, ["ご購入ありがとう"]),
        (B, ["連携ありがとう"]), (C, ["ご購入ありがとう"])])


async def test_a_blocked_customer_gets_nothing_and_the_run_goes_on(world: World) -> None:
    await world.put_sequence("s", two_steps())
    await world.follow(A, at=START)
    await world.unfollow(A, at=START + minutes(30))
    await world.run(START + hours(1))
    await world.run(START + days(2))
    assert await world.new_pushes() == []
    assert [(r["step"], r["status"], r["reason"]) for r in await world.records("s")] == [
        (1, "skipped", "blocked"), (2, "skipped", "blocked")]
    assert (await world.run_state(A, "s"))["status"] == "done"


async def test_the_holdout_is_recorded_not_sent_and_its_goals_give_the_lift(world: World) -> None:
    response = await world.client.put(world.api("/settings/delivery"), json={"holdout_percent": 50},
                                      headers=world.shop.auth)
    assert response.status == 200, await response.text()
    await world.put_sequence("s", {"name": "h", "trigger": {"event": "follow"},
                                   "steps": [{"wait_minutes": 60, "messages": [text("クーポンです")]}],
                                   "goal": {"event": "purchase", "within_days": 7}})
    for user in USERS:
        await world.follow(user, at=START)
    await world.run(START + hours(1))
    sent = {to for to, _ in await world.new_pushes()}
    held = {r["user"] for r in await world.records("s") if r["status"] == "held"}
    assert sent and held and sent.isdisjoint(held) and sent | held == set(USERS)
    # Everyone sent a message and two of the held-back customers buy within the week.
    buyers = sorted(sent) + sorted(held)[:2]
    for index, user in enumerate(buyers):
        await world.order(user, f"o{index}", 1000, START + days(1))
    report = await world.report("s")
    assert report["treated"]["customers"] == len(sent) and report["treated"]["conversions"] == len(sent)
    assert report["holdout"]["customers"] == len(held) and report["holdout"]["conversions"] == 2
    assert report["lift"] is not None and report["goal_reached"] == len(buyers)
    assert report["goal_reached_after_message"] == len(buyers) and report["conversions"] == len(sent)
    assert report["steps"][0]["held"] == len(held) and report["steps"][0]["entered"] == len(USERS)


async def test_the_dry_run_shows_the_next_step_when_and_whether_its_filter_passes(world: World) -> None:
    await world.put_sequence("s", {
        "name": "ドライラン", "trigger": {"event": "follow"},
        "steps": [{"wait_minutes": 60, "filter": {"tags_all": ["会員"]}, "messages": [text("{display_name}さん")]},
                  {"wait_minutes": 60, "messages": [text("2通目")]}],
        "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "12:00", "end": "18:00"}})
    await world.follow(A, name="花子", at=START)  # Tuesday 10:00 in Tokyo: step 1 at 11:00, moved to 12:00
    before = await world.run_state(A, "s")
    body = await world.dry_run(A)
    (run,) = body["sequences"]
    assert (run["sequence_id"], run["name"], run["status"]) == ("s", "ドライラン", "running")
    upcoming = run["next"]
    assert (upcoming["step"], upcoming["filter_passes_now"], upcoming["filter_fails_on"]) == (1, False, "tags_all")
    assert (upcoming["action"], upcoming["reason"]) == ("skip", "filter:tags_all")

    await world.tag([A], START + minutes(1), add=["会員"])
    upcoming = (await world.dry_run(A))["sequences"][0]["next"]
    assert upcoming["filter_passes_now"] is True and upcoming["action"] == "send"
    assert upcoming["due_at"] == (START + hours(1)).isoformat() and upcoming["at"] == (START + hours(2)).isoformat()
    assert upcoming["messages"] == [text("花子さん")]
    assert await world.pushes() == [] and await world.run_state(A, "s") == before  # nothing sent or written
    await world.run(START + hours(2))  # the preview is what the engine sends
    (push,) = await world.pushes(A)
    assert push["messages"] == upcoming["messages"] and push["retry_key"] == upcoming["retry_key"]
    assert (await world.dry_run(A, START + hours(2)))["sequences"][0]["next"]["step"] == 2


async def test_the_first_visit_is_the_earliest_of_the_customers_browsers(world: World) -> None:
    await world.put_sequence("s", {"name": "utm", "trigger": {"event": "link"}, "steps": [
        {"wait_minutes": 3 * 60, "filter": {"utm": {"campaign": "autumn"}, "first_seen_within_days": 30},
         "messages": [text("秋のキャンペーン")]},
        {"wait_minutes": 7 * 24 * 60, "messages": [text("その後")]}]})
    await world.follow(A, at=START)
    await world.visit("phone", "/", START - days(20), utm={"campaign": "autumn"})  # the real first visit
    await world.visit("laptop", "/", START - days(1), utm={"campaign": "winter"})
    await world.link("laptop", A, START)  # A enters; only the laptop is known: campaign "winter"
    assert (await world.run_state(A, "s"))["first_visit"]["utm"] == {"campaign": "winter"}
    await world.link("phone", A, START + hours(2))  # the phone's earlier visit is the first one now
    assert (await world.run_state(A, "s"))["first_visit"]["utm"] == {"campaign": "autumn"}
    await world.run(START + hours(3))
    assert await world.new_pushes() == [(A, ["秋のキャンペーン"])]
    await world.link("phone", B, START + hours(4))  # the phone moves to B: A's first visit is the laptop's again
    assert (await world.run_state(A, "s"))["first_visit"]["utm"] == {"campaign": "winter"}
    assert (await world.run_state(B, "s"))["first_visit"]["utm"] == {"campaign": "autumn"}


async def test_a_tag_removed_and_added_again_during_a_run_keeps_the_run_on_time(world: World) -> None:
    await world.put_sequence("t", two_steps(trigger={"event": "tag_added", "tag": "会員"}, reentry=True))
    await world.follow(A, at=START)
    await world.tag([A], START, add=["会員"])
    await world.tag([A], START + minutes(10), remove=["会員"])  # the run notes the tag is gone…
    assert (await world.run_state(A, "t"))["tag_present"] is False
    await world.tag([A], START + minutes(20), add=["会員"])  # …and back: noted, no second run
    state = await world.run_state(A, "t")
    assert state["tag_present"] is True and state["due_at"] == START + hours(1)
    await world.run(START + hours(1))
    await world.run(START + hours(25))
    assert await world.new_pushes() == [(A, ["1通目"]), (A, ["2通目"])]
    await world.tag([A], START + days(2), add=["会員"])  # already has it after the run: starts nothing
    await world.tag([A], START + days(3), remove=["会員"])
    await world.tag([A], START + days(4), add=["会員"])  # removed, then added: a new run
    await world.run(START + days(4) + hours(1))
    assert await world.new_pushes() == [(A, ["1通目"])]
