"""The dry run: what the engine would do for one customer at a moment — no send, no claim, no write.

It runs the engine's own planner (`plan.Planner`) on the customer as stored, so
the preview is the real decision. When the step is not due yet, or falls in
quiet hours, it also plans the moment it would go out, so a merchant sees the
step, when it will be sent, the products in order with reasons and the Flex JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flows.reminders.plan import Planned, Planner
from storage.database import Database
from storage.reminders import ReminderStateRepository

MAX_HOPS = 3  # wait → due → postponed past quiet hours → send


def describe(item: Planned, at: datetime) -> dict[str, Any]:
    decision = item.decision
    titles = {p["product_id"]: p.get("title") for p in item.products}
    choice = decision.choice
    return {
        "at": at,
        "action": decision.kind,
        "step": decision.step + 1 if decision.step is not None else None,
        "reason": decision.reason,
        "due_at": decision.due_at,
        "superseded_steps": [s + 1 for s in decision.superseded],
        "products": [{"product_id": s.product_id, "title": titles.get(s.product_id), "reason": s.reason}
                     for s in (choice.shown if choice else [])],
        "excluded": [{"product_id": e.product_id, "reason": e.reason} for e in (choice.excluded if choice else [])],
        "retry_key": item.delivery_id,
        "already_recorded": item.recorded is not None,
        "message": item.message,
    }


async def dry_run(database: Database, public_base: str, shop_id: str, line_user_id: str,
                  at: datetime) -> dict[str, Any] | None:
    """None when the customer does not exist; otherwise the decision now and, if later, when it goes out."""
    customer = await ReminderStateRepository(database).get(shop_id, line_user_id)
    if customer is None:
        return None
    reminder = customer.get("reminder") or {}
    planner = Planner(database, public_base)
    moment = at
    (item,) = await planner.plan([customer], moment)
    result = {"line_user_id": line_user_id, "cycle_id": reminder.get("cycle_id"),
              "cycle_started_at": reminder.get("cycle_started_at"), "now": describe(item, moment), "then": None}
    hops = 0
    while item.decision.kind in ("wait", "postpone") and item.decision.due_at and hops < MAX_HOPS:
        moment = item.decision.due_at
        (item,) = await planner.plan([customer], moment)
        hops += 1
    if hops:
        result["then"] = describe(item, moment)
    return result
