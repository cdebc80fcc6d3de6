"""What the engine does for one customer at one moment: a pure decision over plain data.

Order of rules (PRODUCT.md §3): reminders off → cycle ends; a purchase after
the cycle started → cycle stops; nothing due → wait; not linked / bought
recently / no product left → the step is skipped with a reason; otherwise send.
Reachability (friend, blocked, opted out) and quiet hours are the delivery
policy's (`delivery.policy`), applied to what this returns. The real run and
the dry run both call `decide`, so a preview cannot drift from what is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from core.clock import as_utc
from flows.reminders.choice import Candidates, Choice, ViewStat, choose_products
from flows.reminders.timing import due_steps, step_due_at
from storage.shop_settings import ReminderSettings

Kind = Literal["send", "skip", "wait", "stop", "disabled", "complete", "inactive"]


@dataclass(frozen=True)
class Decision:
    kind: Kind
    step: int | None = None  # 0-based index into the shop's steps
    superseded: tuple[int, ...] = ()
    reason: str | None = None
    choice: Choice | None = None
    due_at: datetime | None = None  # when the step fell due (send/skip) or when it will (wait)
    state: dict[str, Any] = field(default_factory=dict)  # the reminder fields to set afterwards (`due_at` included)


@dataclass(frozen=True)
class CustomerFacts:
    """Everything about one customer the rules need, loaded in batch by the engine."""

    customer: Mapping[str, Any]  # its `totals.last_purchase_at` is kept by order ingest
    reminder: Mapping[str, Any]  # the contact's `flows.reminders` sub-state
    views: Sequence[ViewStat]
    bought: Mapping[str, datetime] = field(default_factory=dict)  # product_id → latest paid order with it


def _last_purchase(facts: CustomerFacts) -> datetime | None:
    totals_last = (facts.customer.get("totals") or {}).get("last_purchase_at")
    return as_utc(totals_last) if totals_last else None


def advanced_state(reminder: Mapping[str, Any], handled: Sequence[int], delays: Sequence[int]) -> dict[str, Any]:
    """The reminder fields after the given steps were handled (sent or skipped)."""
    sent = sorted(set(reminder.get("steps_sent") or []) | set(handled))
    next_step = max(handled) + 1
    anchor = as_utc(reminder["cycle_started_at"])
    if next_step >= len(delays):
        return {"steps_sent": sent, "next_step": next_step, "due_at": None, "status": "done", "attempts": 0}
    return {
        "steps_sent": sent,
        "next_step": next_step,
        "due_at": step_due_at(anchor, delays[next_step]),
        "status": "active",
        "attempts": 0,
    }


def decide(
    facts: CustomerFacts,
    settings: ReminderSettings,
    products: Mapping[str, Mapping[str, Any]],
    candidates: Candidates,
    now: datetime,
) -> Decision:
    reminder = facts.reminder
    if reminder.get("status") != "active" or not reminder.get("cycle_started_at"):
        return Decision("inactive", state={"due_at": None})
    if not settings.enabled:
        return Decision("disabled", reason="reminders_off", state={"status": "disabled", "due_at": None})
    anchor = as_utc(reminder["cycle_started_at"])
    last_purchase = _last_purchase(facts)
    if last_purchase is not None and last_purchase >= anchor:
        return Decision("stop", reason="purchased", state={"status": "stopped", "due_at": None})
    delays = [step.delay_days for step in settings.steps]
    next_step = int(reminder.get("next_step") or 0)
    due = due_steps(anchor, delays, next_step, now)
    if due.send is None:
        if due.next_due_at is None:
            return Decision("complete", state={"status": "done", "due_at": None})
        return Decision("wait", due_at=due.next_due_at, state={"due_at": due.next_due_at})
    step = due.send
    handled = [*due.superseded, step]
    after = advanced_state(reminder, handled, delays)
    due_at = step_due_at(anchor, delays[step])
    common = {"step": step, "superseded": due.superseded, "due_at": due_at}

    reason = None if facts.customer.get("linked") else "not_linked"
    recent = timedelta(days=settings.recent_purchase_days)
    if reason is None and last_purchase is not None and recent and now - last_purchase < recent:
        reason = "recent_purchase"
    if reason is not None:
        return Decision("skip", reason=reason, state=after, **common)  # type: ignore[arg-type]

    bought = _bought_products(facts, now, settings.bought_product_exclusion_days)
    choice = choose_products(facts.views, products, bought, candidates, settings.max_products)
    if not choice.shown:
        return Decision("skip", reason="no_products", choice=choice, state=after, **common)  # type: ignore[arg-type]
    return Decision("send", choice=choice, state=after, **common)  # type: ignore[arg-type]


def _bought_products(facts: CustomerFacts, now: datetime, days: int) -> set[str]:
    since = now - timedelta(days=days)
    return {pid for pid, at in facts.bought.items() if as_utc(at) >= since}
