"""The sequences dry run: for one customer, the runs they are in, the next step, when, and whether its
filter passes now — the engine's own planning on the stored contact, with no send, claim or write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from delivery.engine import Engine, ShopInfo, shop_infos
from flows.sequences.definition import LoadedSequence, sequence_id_of
from flows.sequences.filters import failed_check
from flows.sequences.plan import RUNNING, SequencesFlow
from storage.contacts import ContactRepository
from storage.customers import CustomerRepository
from storage.database import Database, Document
from storage.keys import customer_key

MAX_HOPS = 4  # wait → due → postponed by the window / the cap → send
ACTIONS = {"send": "send", "defer": "postpone", "hold": "hold", "drop": "skip", "skip": "skip"}


def next_step(engine: Engine, contact: Document, key: str, state: dict[str, Any], info: ShopInfo | None,
              at: datetime) -> dict[str, Any]:
    """What the run's next step does, and when: the engine's plan at `at`, followed past waits and deferrals."""
    moment = at
    alone = {**contact, "flows": {key: state}}
    for _ in range(MAX_HOPS):
        (item,) = engine.plan_contact(alone, moment, info, not_due=True).items
        intent, verdict = item.intent, item.verdict
        if intent.kind == "wait" and intent.due_at is not None:
            moment = intent.due_at
            continue
        if verdict.action == "defer" and verdict.until is not None:
            moment = verdict.until
            continue
        break
    action = intent.kind if intent.kind in ("wait", "end") else ACTIONS.get(verdict.action, verdict.action)
    return {"action": action, "at": moment, "due_at": intent.due_at,
            "reason": verdict.reason or intent.reason, "retry_key": intent.key, "messages": intent.messages}


def describe(flow: SequencesFlow, engine: Engine, contact: Document, key: str, state: dict[str, Any],
             info: ShopInfo | None, at: datetime) -> dict[str, Any]:
    shop_id = str(contact.get("shop_id") or "")
    sequence_id = sequence_id_of(key)
    loaded: LoadedSequence | None = flow.sequence(shop_id, sequence_id)
    current = loaded is not None and loaded.gen == state.get("gen")
    body: dict[str, Any] = {
        "sequence_id": sequence_id, "name": loaded.definition.name if current and loaded else None,
        "run": state.get("run"), "status": state.get("status") if current else "ended",
        "entered_at": state.get("entered_at"), "ended_at": state.get("ended_at"),
        "end_reason": state.get("end_reason") if current else "deleted", "goal_at": state.get("goal_at"),
        "next": None,
    }
    if not current or loaded is None or state.get("status") != RUNNING:
        return body
    index = int(state.get("next_step") or 0)
    steps = loaded.definition.steps
    body["steps"] = len(steps)
    if index < len(steps):
        check = failed_check(steps[index].filter, contact.get("customer"), state.get("first_visit"), at)
        body["next"] = {"step": index + 1, "filter_passes_now": check is None, "filter_fails_on": check,
                        **next_step(engine, contact, key, state, info, at)}
    return body


async def dry_run(database: Database, shop_id: str, line_user_id: str, at: datetime) -> dict[str, Any] | None:
    """None when the customer does not exist."""
    customer = await CustomerRepository(database).get(shop_id, line_user_id)
    if customer is None:
        return None
    flow = SequencesFlow()
    engine = Engine([flow])
    contact = await ContactRepository(database).joined(shop_id, line_user_id, engine.lookups) or {
        "_id": customer_key(shop_id, line_user_id), "shop_id": shop_id, "line_user_id": line_user_id,
        "flows": {}, "customer": customer}
    await flow.prepare(database, {shop_id})
    info = (await shop_infos(database, [shop_id]))[shop_id]
    runs = [describe(flow, engine, contact, key, dict(state), info, at)
            for key, state in sorted((contact.get("flows") or {}).items())
            if flow.owns(key) and isinstance(state, dict)]
    return {"line_user_id": line_user_id, "at": at, "sequences": runs}
