"""The reminders dry run: what the engine would do for one customer at a moment — no send, no claim, no write.

It runs the engine's own planning (`Engine.plan_contact`: the flow's decision,
then the delivery policy) on the contact as stored, so the preview is the real
decision. When the step is not due yet, or is held back (quiet hours, the
frequency cap), it also plans the moment it would go out, so a merchant sees
the step, when it will be sent, the products in order with reasons and the Flex JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from delivery.engine import Engine, ShopInfo, Work, shop_infos
from flows.reminders.plan import STATE_KEY, RemindersFlow
from storage.contacts import ContactRepository
from storage.customers import CustomerRepository
from storage.database import Database, Document
from storage.keys import customer_key

MAX_HOPS = 3  # wait → due → postponed past quiet hours / the cap → send
ACTIONS = {"send": "send", "defer": "postpone", "hold": "hold", "drop": "skip", "skip": "skip"}


def _action(item: Work | None, kind: str) -> str:
    if item is None:
        return kind
    if item.intent.kind in ("wait", "end"):
        return kind
    return ACTIONS.get(item.verdict.action, item.verdict.action)


def describe(flow: RemindersFlow, engine: Engine, contact: Document, info: ShopInfo | None,
             at: datetime) -> tuple[dict[str, Any], datetime | None]:
    """What happens at `at`, and the next moment worth looking at (None: nothing later)."""
    planned = flow.plan_item(contact, at)
    work = engine.plan_contact(contact, at, info, not_due=True)
    item = next((w for w in work.items if w.intent.state_key == STATE_KEY), None)
    decision = planned.decision
    action = _action(item, decision.kind)
    titles = {p["product_id"]: p.get("title") for p in planned.products}
    choice = decision.choice
    recorded = {entry.get("key") for entry in contact.get("log") or []}
    body = {
        "at": at,
        "action": action,
        "step": decision.step + 1 if decision.step is not None else None,
        "reason": item.verdict.reason if item is not None and item.verdict.reason else decision.reason,
        "due_at": decision.due_at,
        "superseded_steps": [s + 1 for s in decision.superseded],
        "products": [{"product_id": s.product_id, "title": titles.get(s.product_id), "reason": s.reason}
                     for s in (choice.shown if choice else [])],
        "excluded": [{"product_id": e.product_id, "reason": e.reason} for e in (choice.excluded if choice else [])],
        "retry_key": planned.key,
        "already_recorded": planned.key in recorded,
        "message": planned.message,
    }
    later = None
    if action == "wait":
        later = decision.due_at
    elif action == "postpone" and item is not None:
        later = item.verdict.until
    return body, later


async def dry_run(database: Database, public_base: str, shop_id: str, line_user_id: str,
                  at: datetime) -> dict[str, Any] | None:
    """None when the customer does not exist; otherwise the decision now and, if later, when it goes out."""
    customer = await CustomerRepository(database).get(shop_id, line_user_id)
    if customer is None:
        return None
    flow = RemindersFlow(public_base)
    engine = Engine([flow])
    contact = await ContactRepository(database).joined(shop_id, line_user_id, engine.lookups) or {
        "_id": customer_key(shop_id, line_user_id), "shop_id": shop_id, "line_user_id": line_user_id,
        "flows": {}, "customer": customer, "profile": None}
    await flow.prepare(database, {shop_id})
    info = (await shop_infos(database, [shop_id], at))[shop_id]
    reminder = (contact.get("flows") or {}).get(STATE_KEY) or {}
    now, later = describe(flow, engine, contact, info, at)
    result: dict[str, Any] = {"line_user_id": line_user_id, "cycle_id": reminder.get("cycle_id"),
                              "cycle_started_at": reminder.get("cycle_started_at"), "now": now, "then": None}
    hops = 0
    while later is not None and hops < MAX_HOPS:
        then, later_still = describe(flow, engine, contact, info, later)
        result["then"] = then
        later, hops = later_still, hops + 1
    return result
