"""The cart dry run: what the engine would do about one cart at a moment, and when — no send, no claim, no write.

It plans the cart with the engine's own planning (`Engine.plan_contact`: the
flow's decision, then the delivery policy) on the owner's contact as stored.
When the cart is not (yet) the owner's journey, it plans the journey the
ingest would have armed for it — or says why there is none (no owner yet,
ordered, emptied, reminders off, a newer cart of the customer). When the
reminder is not due yet or held back (quiet hours, the frequency cap), it
also plans the moment it would go out.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from core.clock import as_utc
from delivery.engine import Engine, ShopInfo, shop_infos
from flows.carts.journey import STATE_KEY, arm
from flows.carts.plan import CartsFlow
from storage.carts import CartRepository
from storage.contacts import ContactRepository
from storage.customers import CustomerRepository
from storage.database import Database, Document
from storage.keys import customer_key

MAX_HOPS = 3  # wait → due → postponed past quiet hours / the cap → send
ACTIONS = {"send": "send", "defer": "postpone", "hold": "hold", "drop": "skip", "skip": "skip"}


def describe(engine: Engine, contact: Document, info: ShopInfo | None,
             at: datetime) -> tuple[dict[str, Any], datetime | None]:
    """What happens at `at`, and the next moment worth looking at (None: nothing later)."""
    work = engine.plan_contact(contact, at, info, not_due=True)
    item = next((w for w in work.items if w.intent.state_key == STATE_KEY), None)
    if item is None:
        return {"at": at, "action": "none", "reason": "no_journey"}, None
    intent, verdict = item.intent, item.verdict
    if intent.kind == "wait":
        action = "wait"
    elif intent.kind == "end":
        action = "none"
    else:
        action = ACTIONS.get(verdict.action, verdict.action)
    recorded = {entry.get("key") for entry in contact.get("log") or []}
    messages = json.loads(intent.encoded) if intent.encoded is not None else intent.messages
    body = {"at": at, "action": action, "reason": verdict.reason or intent.reason, "due_at": intent.due_at,
            "retry_key": intent.key, "already_recorded": intent.key in recorded if intent.key else False,
            "messages": messages}
    later = None
    if action == "wait":
        later = intent.due_at
    elif action == "postpone":
        later = verdict.until
    return body, later


def _why_not(cart: Document, current: dict[str, Any], armed: bool) -> str | None:
    """Why this cart has no journey of its own (None: it would have one)."""
    if not cart.get("line_user_id"):
        return "not_linked"
    if cart.get("state") in ("ordered", "emptied"):
        return str(cart["state"])
    if not cart.get("items"):
        return "no_items"
    if not armed:
        return "disabled"
    if cart["cart_token"] in (current.get("handled") or []):
        return "already_reminded"
    latest = current.get("last_activity_at")
    if current.get("token") and latest is not None and as_utc(latest) > as_utc(cart["last_activity_at"]):
        return "superseded"  # the customer has a cart with newer activity: that one is their journey
    return None


async def cart_dry_run(database: Database, public_base: str, shop_id: str, cart_token: str,
                       at: datetime) -> dict[str, Any] | None:
    """None when the cart is unknown; otherwise what happens at `at` and, if later, when it goes out."""
    cart = await CartRepository(database).get(shop_id, cart_token)
    if cart is None:
        return None
    result: dict[str, Any] = {
        "cart_token": cart_token, "state": cart.get("state"), "stage": cart.get("stage"),
        "line_user_id": cart.get("line_user_id"), "value": cart.get("value"), "lines": len(cart.get("items") or []),
        "last_activity_at": cart.get("last_activity_at"), "journey": None, "now": None, "then": None,
    }
    user = cart.get("line_user_id")
    flow = CartsFlow(public_base)
    engine = Engine([flow])
    await flow.prepare(database, {shop_id})
    settings = flow.settings(shop_id)
    contact = None
    if user:
        contact = await ContactRepository(database).joined(shop_id, user, engine.lookups)
        if contact is None:
            contact = {"_id": customer_key(shop_id, user), "shop_id": shop_id, "line_user_id": user, "flows": {},
                       "customer": await CustomerRepository(database).get(shop_id, user)}
    current = dict(((contact or {}).get("flows") or {}).get(STATE_KEY) or {})
    if contact is not None and current.get("token") == cart_token:
        state, result["journey"] = current, "current"
    else:
        write = arm(cart, settings, at) if settings is not None else None
        armed = write is not None and write.fields.get("status") == "waiting"
        reason = _why_not(cart, current, armed)
        if contact is None or reason is not None or write is None:
            result["now"] = {"at": at, "action": "none", "reason": reason or "not_linked"}
            return result
        state, result["journey"] = write.fields, "as_ingest_would_arm_it"
    assert contact is not None
    planned = {**contact, "flows": {STATE_KEY: state}}
    info = (await shop_infos(database, [shop_id]))[shop_id]
    result["now"], later = describe(engine, planned, info, at)
    hops = 0
    while later is not None and hops < MAX_HOPS:
        result["then"], later = describe(engine, planned, info, later)
        hops += 1
    return result
