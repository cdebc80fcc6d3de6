"""Who enters a sequence and whose run reaches its goal: pure decisions over what happened to one customer.

The listeners turn ingest signals into `Happening`s (a follow, a link, a page
view, an add to cart, a purchase, a tag added or removed) and ask `decide`,
with the customer's runs as stored, what to write. The rules:
- one running run per customer and sequence: a trigger during a run is ignored;
- `reentry: false`: a customer who entered this sequence once (finished, reached
  the goal or left) never enters again; `reentry: true`: they enter again on a
  trigger after their run ended;
- a sequence deleted and created again under the same ID is a new sequence (another `gen`);
- a goal counts for a run (running, or finished within the goal's days) when
  its event comes after the entry — never the very event that started the run —
  within `within_days` of the entry; it ends the run (no later step is sent);
- the tag_added trigger fires when the tag is added; adding a tag the customer
  already had (as far as this run knows) starts nothing;
- an event seen twice (a replayed signal) decides the same thing: the run's ID
  comes from the event, and a run already started or ended by it is only
  recorded again (idempotent records).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from core.clock import as_utc
from flows.sequences.definition import Goal, LoadedSequence, Trigger
from flows.sequences.timing import step_due

HappeningKind = Literal["follow", "link", "page_view", "add_to_cart", "purchase", "tag_added", "tag_removed"]


@dataclass(frozen=True)
class Happening:
    """Something a customer did (or had done to them) that may start a run or reach a goal."""

    kind: HappeningKind
    id: str  # unique per event ("ev:<event id>", "order:<order id>", "follow:<ms>", …)
    at: datetime
    url: str | None = None
    product_id: str | None = None
    tag: str | None = None
    order_id: str | None = None
    revenue: int = 0
    can_trigger: bool = True  # an old order (imported history) may reach a goal but never starts a run


ActionKind = Literal["enter", "entered_again", "goal", "goal_again", "set"]


@dataclass
class Action:
    """One write for one sequence of the customer, conditional on the run as it was read (`seen`)."""

    kind: ActionKind
    sequence: LoadedSequence
    seen: dict[str, Any]  # {"run", "status", "due_at"} as read: the write applies only if they still hold
    fields: dict[str, Any] = field(default_factory=dict)  # merged into the run (enter, goal, set)
    happening: Happening | None = None

    @property
    def run(self) -> str:
        return str(self.fields.get("run") or self.seen.get("run") or "")


def run_id(happening: Happening) -> str:
    """Deterministic from the event, so every process (and a replay) names the same run."""
    digest = hashlib.sha256(happening.id.encode()).hexdigest()[:8]
    return f"r{int(as_utc(happening.at).timestamp() * 1000):x}-{digest}"


def matches_trigger(trigger: Trigger, happening: Happening) -> bool:
    if trigger.event != happening.kind or not happening.can_trigger:
        return False
    if trigger.event == "tag_added":
        return happening.tag == trigger.tag
    if trigger.url_contains is not None and trigger.url_contains not in (happening.url or ""):
        return False
    return trigger.product_id is None or trigger.product_id == happening.product_id


def matches_goal(goal: Goal, happening: Happening) -> bool:
    if goal.event != happening.kind:
        return False
    return goal.url_contains is None or goal.url_contains in (happening.url or "")


def relevant(sequence: LoadedSequence, kinds: Collection[str]) -> bool:
    """Whether any of these kinds of happening can matter to the sequence (saves reading contacts)."""
    definition = sequence.definition
    wanted: set[str] = {definition.trigger.event}
    if definition.trigger.event == "tag_added":
        wanted.add("tag_removed")
    if definition.goal is not None:
        wanted.add(definition.goal.event)
    return not wanted.isdisjoint(kinds)


def new_run(sequence: LoadedSequence, happening: Happening) -> dict[str, Any]:
    at = as_utc(happening.at)
    first = sequence.definition.steps[0]
    return {"run": run_id(happening), "gen": sequence.gen, "status": "running", "trigger": happening.kind,
            "trigger_event": happening.id, "entered_at": at, "next_step": 0, "anchor": at,
            "due_at": step_due(at, first), "ended_at": None, "end_reason": None, "goal_at": None,
            "goal_event": None, "tag_present": True if happening.kind == "tag_added" else None, "attempts": 0}


def _seen(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"run": state.get("run"), "status": state.get("status"), "due_at": state.get("due_at")}


def _goal_counts(sequence: LoadedSequence, state: Mapping[str, Any], happening: Happening) -> bool:
    goal = sequence.definition.goal
    if goal is None or state.get("gen") != sequence.gen or state.get("status") not in ("running", "done"):
        return False
    if not matches_goal(goal, happening) or happening.id == state.get("trigger_event"):
        return False
    entered = state.get("entered_at")
    if entered is None:
        return False
    entered = as_utc(entered)
    return entered <= as_utc(happening.at) <= entered + timedelta(days=goal.within_days)


def _may_enter(sequence: LoadedSequence, state: Mapping[str, Any], happening: Happening) -> bool:
    if not state or state.get("gen") != sequence.gen:
        return True  # never in this sequence (or only in a deleted one of the same ID)
    if not sequence.definition.reentry or state.get("status") == "running":
        return False
    if happening.kind == "tag_added" and state.get("tag_present"):
        return False
    ended = state.get("ended_at")
    return ended is None or as_utc(ended) < as_utc(happening.at)  # not a trigger older than the run it follows


def decide(sequences: Sequence[LoadedSequence], runs: Mapping[str, Mapping[str, Any]],
           happenings: Sequence[Happening], now: datetime) -> list[Action]:
    """The writes for one customer, in event order; `runs` are the contact's `flows` (by state key)."""
    current = {key: dict(state) for key, state in runs.items()}
    actions: list[Action] = []
    for happening in sorted(happenings, key=lambda h: as_utc(h.at)):
        for sequence in sequences:
            state = current.get(sequence.key) or {}
            goal_action = _goal(sequence, state, happening, now)
            if goal_action is not None:
                actions.append(goal_action)
                state = current[sequence.key] = {**state, **goal_action.fields}
            action = _trigger(sequence, state, happening)
            if action is not None:
                actions.append(action)
                current[sequence.key] = {**state, **action.fields}
    return actions


def _goal(sequence: LoadedSequence, state: Mapping[str, Any], happening: Happening, now: datetime) -> Action | None:
    if state.get("status") == "goal" and state.get("goal_event") == happening.id and state.get("gen") == sequence.gen:
        return Action("goal_again", sequence, _seen(state), happening=happening)
    if not _goal_counts(sequence, state, happening):
        return None
    fields = {"status": "goal", "due_at": None, "goal_at": as_utc(happening.at), "goal_event": happening.id,
              "ended_at": now, "end_reason": "goal"}
    return Action("goal", sequence, _seen(state), fields, happening)


def _trigger(sequence: LoadedSequence, state: Mapping[str, Any], happening: Happening) -> Action | None:
    definition = sequence.definition
    trigger = definition.trigger
    same_gen = bool(state) and state.get("gen") == sequence.gen
    if happening.kind == "tag_removed":
        if trigger.event == "tag_added" and happening.tag == trigger.tag and same_gen and state.get("tag_present"):
            return Action("set", sequence, _seen(state), {"tag_present": False}, happening)
        return None
    if not definition.enabled or not matches_trigger(trigger, happening):
        return None
    if same_gen and state.get("run") == run_id(happening):
        return Action("entered_again", sequence, _seen(state), happening=happening)
    if _may_enter(sequence, state, happening):
        return Action("enter", sequence, _seen(state), new_run(sequence, happening), happening)
    if happening.kind == "tag_added" and same_gen and not state.get("tag_present"):
        return Action("set", sequence, _seen(state), {"tag_present": True}, happening)
    return None
