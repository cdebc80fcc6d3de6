"""Entry rules and goals as pure decisions: one running run per customer and sequence, `reentry`, replays,
tags already present, the goal's window — table-tested over `entry.decide`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.sequences.definition import LoadedSequence, SequenceDefinition
from flows.sequences.entry import Happening, decide, matches_trigger, new_run, relevant, run_id

T0 = datetime(2037, 12, 1, 1, 0, tzinfo=UTC)
KEY = "seq:s1"


def sequence(trigger: dict[str, Any], *, reentry: bool = False, goal: dict[str, Any] | None = None,
             gen: str = "g1", enabled: bool = True) -> LoadedSequence:
    body: dict[str, Any] = {"name": "s", "trigger": trigger, "reentry": reentry, "enabled": enabled,
                            "steps": [{"wait_minutes": 60, "messages": [{"type": "text", "text": "x"}]}]}
    if goal is not None:
        body["goal"] = goal
    return LoadedSequence("s1", gen, SequenceDefinition.model_validate(body))


def view(url: str = "https://s.example/p", minutes: int = 0, event: str = "e1", **fields: Any) -> Happening:
    return Happening("page_view", f"ev:{event}", T0 + timedelta(minutes=minutes), url=url, **fields)


def kinds(actions: list[Any]) -> list[str]:
    return [a.kind for a in actions]


PAGE_VIEW = {"event": "page_view"}


def test_a_trigger_starts_one_run_and_a_second_trigger_during_it_starts_nothing() -> None:
    seq = sequence(PAGE_VIEW)
    actions = decide([seq], {}, [view(event="e1"), view(minutes=5, event="e2")], T0)
    assert kinds(actions) == ["enter"]
    run = actions[0].fields
    assert run["status"] == "running" and run["entered_at"] == T0 and run["due_at"] == T0 + timedelta(hours=1)
    assert run["run"] == run_id(view(event="e1")) and actions[0].seen == {"run": None, "status": None,
                                                                                    "due_at": None}


@pytest.mark.parametrize(
    ("reentry", "status", "ended_minutes", "trigger_minutes", "expected"),
    [
        (False, "running", None, 10, []),
        (False, "done", 5, 10, []),  # never again
        (False, "goal", 5, 10, []),
        (False, "ended", 5, 10, []),
        (True, "running", None, 10, []),  # one running run per customer
        (True, "done", 5, 10, ["enter"]),
        (True, "goal", 5, 10, ["enter"]),
        (True, "done", 10, 5, []),  # a trigger from before the run ended (a late replay) starts nothing
    ],
)
def test_reentry(reentry: bool, status: str, ended_minutes: int | None, trigger_minutes: int,
                 expected: list[str]) -> None:
    seq = sequence(PAGE_VIEW, reentry=reentry)
    state = {**new_run(seq, view(event="old", minutes=-100)), "status": status,
             "ended_at": T0 + timedelta(minutes=ended_minutes) if ended_minutes is not None else None}
    assert kinds(decide([seq], {KEY: state}, [view(minutes=trigger_minutes, event="new")], T0)) == expected


def test_a_sequence_made_again_under_the_same_id_is_a_new_sequence() -> None:
    old = sequence(PAGE_VIEW, gen="g-old")
    state = {**new_run(old, view(event="old", minutes=-100)), "status": "done"}
    assert kinds(decide([sequence(PAGE_VIEW, gen="g-new")], {KEY: state}, [view()], T0)) == ["enter"]
    running = {**state, "status": "running"}  # even over a run of the deleted one (it ends at its next step)
    assert kinds(decide([sequence(PAGE_VIEW, gen="g-new")], {KEY: running}, [view()], T0)) == ["enter"]


def test_a_replayed_event_decides_the_same_run_and_only_records_it_again() -> None:
    seq = sequence(PAGE_VIEW, reentry=True)
    (enter,) = decide([seq], {}, [view()], T0)
    again = decide([seq], {KEY: enter.fields}, [view()], T0 + timedelta(minutes=3))
    assert kinds(again) == ["entered_again"] and again[0].run == enter.run


def test_a_switched_off_sequence_starts_nothing_but_its_goals_still_count() -> None:
    seq = sequence(PAGE_VIEW, enabled=False, goal={"event": "purchase", "within_days": 3})
    assert decide([seq], {}, [view()], T0) == []
    running = new_run(seq, view(event="old"))
    buy = Happening("purchase", "order:o1", T0 + timedelta(days=1), order_id="o1")
    assert kinds(decide([seq], {KEY: running}, [buy], T0)) == ["goal"]


@pytest.mark.parametrize(
    ("trigger", "happening", "expected"),
    [
        ({"event": "page_view", "url_contains": "/sale"}, view("https://s.example/sale/a"), True),
        ({"event": "page_view", "url_contains": "/sale"}, view("https://s.example/new"), False),
        ({"event": "page_view", "product_id": "p1"}, view(product_id="p1"), True),
        ({"event": "page_view", "product_id": "p1"}, view(product_id="p2"), False),
        ({"event": "page_view", "url_contains": "/p", "product_id": "p1"}, view(product_id="p1"), True),
        ({"event": "add_to_cart"}, view(), False),
        ({"event": "add_to_cart", "product_id": "p1"},
         Happening("add_to_cart", "ev:c", T0, url="https://s.example/p", product_id="p1"), True),
        ({"event": "purchase"}, Happening("purchase", "order:o", T0, order_id="o"), True),
        ({"event": "purchase"}, Happening("purchase", "order:o", T0, order_id="o", can_trigger=False), False),
        ({"event": "tag_added", "tag": "会員"}, Happening("tag_added", "tag+", T0, tag="会員"), True),
        ({"event": "tag_added", "tag": "会員"}, Happening("tag_added", "tag+", T0, tag="VIP"), False),
        ({"event": "follow"}, Happening("follow", "follow:1", T0), True),
        ({"event": "link"}, Happening("link", "link:b:1", T0), True),
        ({"event": "link"}, Happening("follow", "follow:1", T0), False),
    ],
)
def test_triggers(trigger: dict[str, Any], happening: Happening, expected: bool) -> None:
    assert matches_trigger(sequence(trigger).definition.trigger, happening) is expected


GOAL = {"event": "page_view", "url_contains": "/signup", "within_days": 3}


@pytest.mark.parametrize(
    ("status", "happening", "expected"),
    [
        ("running", view("https://s.example/signup", minutes=30, event="g"), ["goal"]),
        ("running", view("https://s.example/other", minutes=30, event="g"), []),
        ("done", view("https://s.example/signup", minutes=30, event="g"), ["goal"]),  # after the last step
        ("ended", view("https://s.example/signup", minutes=30, event="g"), []),
        ("running", view("https://s.example/signup", minutes=3 * 24 * 60 + 1, event="g"), []),  # too late
        ("running", view("https://s.example/signup", minutes=-1, event="g"), []),  # before the entry
        # the trigger itself (replayed) is never its own run's goal
        ("running", view("https://s.example/signup", minutes=0, event="t"), ["entered_again"]),
    ],
)
def test_goals(status: str, happening: Happening, expected: list[str]) -> None:
    seq = sequence({"event": "page_view"}, goal=GOAL)
    state = {**new_run(seq, view("https://s.example/signup", event="t")), "status": status}
    actions = decide([seq], {KEY: state}, [happening], T0 + timedelta(days=5))
    assert kinds(actions) == expected
    if expected == ["goal"]:
        assert actions[0].fields["status"] == "goal" and actions[0].fields["due_at"] is None
        assert actions[0].fields["goal_at"] == happening.at
        assert actions[0].seen == {"run": state["run"], "status": status, "due_at": state["due_at"]}


def test_a_goal_then_a_trigger_in_one_batch_with_reentry_starts_a_new_run_only_for_a_later_trigger() -> None:
    seq = sequence(PAGE_VIEW, reentry=True, goal={"event": "page_view", "url_contains": "/signup", "within_days": 3})
    state = new_run(seq, view(event="t0", minutes=-60))
    now = T0 + timedelta(minutes=1)
    actions = decide([seq], {KEY: state}, [view("https://s.example/signup", event="g"),
                                            view(minutes=10, event="t1")], now)
    assert kinds(actions) == ["goal", "enter"]
    assert actions[1].seen == {"run": state["run"], "status": "goal", "due_at": None}
    replay = decide([seq], {KEY: {**state, **actions[0].fields}}, [view("https://s.example/signup", event="g")], now)
    assert kinds(replay) == ["goal_again"]


def test_a_tag_the_customer_already_had_starts_nothing_until_it_was_removed() -> None:
    seq = sequence({"event": "tag_added", "tag": "会員"}, reentry=True)
    added = Happening("tag_added", "tag+:会員:1", T0, tag="会員")
    (enter,) = decide([seq], {}, [added], T0)
    assert enter.fields["tag_present"] is True
    done = {**enter.fields, "status": "done", "ended_at": T0 + timedelta(days=1)}
    again = Happening("tag_added", "tag+:会員:2", T0 + timedelta(days=2), tag="会員")
    assert decide([seq], {KEY: done}, [again], T0) == []  # posted again while the customer has it
    removed = Happening("tag_removed", "tag-:会員:3", T0 + timedelta(days=3), tag="会員")
    (unset,) = decide([seq], {KEY: done}, [removed], T0)
    assert unset.kind == "set" and unset.fields == {"tag_present": False}
    later = Happening("tag_added", "tag+:会員:4", T0 + timedelta(days=4), tag="会員")
    assert kinds(decide([seq], {KEY: {**done, "tag_present": False}}, [later], T0)) == ["enter"]


def test_only_sequences_that_care_about_a_kind_of_happening_make_the_listeners_read_contacts() -> None:
    seq = sequence({"event": "tag_added", "tag": "x"}, goal={"event": "purchase", "within_days": 1})
    assert relevant(seq, {"tag_removed"}) and relevant(seq, {"purchase"}) and not relevant(seq, {"page_view"})
