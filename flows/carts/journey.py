"""A customer's cart journey: the contact's `flows.cart` sub-state, written at ingest, decided at send time. Pure.

Sub-state (`flows.cart`): token (the cart it is about: the customer's latest
active cart), stage, items (the first `MAX_CARDS` lines: what the message
shows), line_count, value, last_activity_at, cart_v (the cart's version it was
taken from), status ("waiting" → "reminded" | "ended"), reason, due_at,
handled (tokens the engine has dealt with for good: reminded, held out or
dropped — each cart at most once), updated_at.

Ingest writes go through `ContactRepository.put_flow_state` with a filter on the
current sub-state (`Write.when`), so a late or replayed write never moves the
journey back: the same cart only moves to a newer version, another cart only
takes over with activity at least as recent, a handled cart is never armed
again. The decision at send time re-checks everything it can from the contact
alone: the delay, a purchase since the last activity, the cart already
reminded, the cooldown after the customer's last cart reminder (from the
contact's records, which every settle appends, even when the sub-state lost a
race to a newer cart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.clock import as_utc
from delivery.flow import IntentKind
from storage.database import Document
from storage.shop_settings import CartSettings

FLOW = "cart"  # the flow's name in reports, retry keys, click links and records
STATE_KEY = "cart"  # its key in a contact's `flows`
FIELD = f"flows.{STATE_KEY}"
MAX_CARDS = 5
HANDLED_KEEP = 20
STALE = timedelta(days=2)  # a reminder the frequency cap holds back longer than this after its due time is dropped
REMINDED = ("sent", "held")  # records that count as "this customer got (or, held out, would have got) a reminder"


@dataclass(frozen=True)
class Write:
    """An ingest write of the sub-state: fields merged if `when` (a filter on the contact) holds."""

    fields: dict[str, Any]
    when: dict[str, Any]
    due_at: datetime | None
    create: bool


def snapshot(cart: Mapping[str, Any]) -> dict[str, Any]:
    """What the journey keeps of its cart (the message is built from it, no cart read at send time)."""
    items = list(cart.get("items") or [])
    return {"token": cart["cart_token"], "stage": cart.get("stage") or "cart", "items": items[:MAX_CARDS],
            "line_count": len(items), "value": int(cart.get("value") or 0),
            "last_activity_at": as_utc(cart["last_activity_at"]), "cart_v": int(cart.get("version") or 0)}


def arm(cart: Mapping[str, Any], settings: CartSettings, now: datetime) -> Write | None:
    """The write after a change of one of the customer's carts (None: nothing to write).

    An open cart with items (reminders switched on) becomes the journey, due `delay_hours` after its last
    activity; a cart that ended (ordered, emptied) ends the journey if it is the journey's cart.
    """
    token = cart["cart_token"]
    version = int(cart.get("version") or 0)
    if not cart.get("line_user_id") or not cart.get("last_activity_at"):
        return None
    if cart.get("state") == "open" and cart.get("items") and settings.enabled:
        last = as_utc(cart["last_activity_at"])
        due = last + timedelta(hours=settings.delay_hours)
        fields = {**snapshot(cart), "status": "waiting", "reason": None, "due_at": due, "updated_at": now}
        when = {f"{FIELD}.handled": {"$ne": token}, "$or": [
            # the same cart, newer than what the journey holds (or the journey never saw it: a crash)
            {f"{FIELD}.token": token, f"{FIELD}.cart_v": {"$not": {"$gte": version}}},
            # another cart (or none yet), with activity at least as recent
            {f"{FIELD}.token": {"$ne": token}, f"{FIELD}.last_activity_at": {"$not": {"$gt": last}}},
        ]}
        return Write(fields, when, due, create=True)
    reason = {"ordered": "ordered", "emptied": "emptied"}.get(str(cart.get("state")), "no_items")
    if cart.get("state") == "open" and cart.get("items"):
        reason = "disabled"
    fields = {"status": "ended", "reason": reason, "due_at": None, "cart_v": version, "updated_at": now}
    when = {f"{FIELD}.token": token, f"{FIELD}.status": "waiting", f"{FIELD}.cart_v": {"$lt": version}}
    return Write(fields, when, None, create=False)


def purchased(at: datetime, now: datetime) -> Write:
    """An order or a purchase by the customer at `at` ends a journey whose cart was last active before it."""
    return Write({"status": "ended", "reason": "purchased", "due_at": None, "updated_at": now},
                 {f"{FIELD}.status": "waiting", f"{FIELD}.last_activity_at": {"$lte": at}}, None, create=False)


@dataclass(frozen=True)
class CartDecision:
    kind: IntentKind
    state: dict[str, Any]  # merged into the sub-state once handled (always says the next `due_at`)
    reason: str | None = None
    due_at: datetime | None = None  # when the reminder fell (or will fall) due
    stale_after: datetime | None = None


def _records(log: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in log if e.get("flow") == FLOW and e.get("status") in REMINDED]


def reminded_tokens(state: Mapping[str, Any], log: Sequence[Mapping[str, Any]]) -> set[str]:
    return {str(t) for t in state.get("handled") or []} | {str(e.get("cycle")) for e in _records(log)}


def last_reminder(log: Sequence[Mapping[str, Any]], sent: Sequence[Mapping[str, Any]]) -> datetime | None:
    """The customer's latest cart reminder, sent or held out (the cooldown runs from it)."""
    moments = [as_utc(e.get("sent_at") or e["at"]) for e in _records(log) if e.get("sent_at") or e.get("at")]
    moments += [as_utc(s["at"]) for s in sent if s.get("flow") == FLOW and s.get("at")]
    return max(moments) if moments else None


@dataclass(frozen=True)
class Facts:
    """What the decision reads of the contact (all joined in the engine's one read)."""

    state: Mapping[str, Any]
    customer: Mapping[str, Any] | None
    log: Sequence[Mapping[str, Any]] = field(default_factory=list)
    sent: Sequence[Mapping[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, contact: Document, state: Mapping[str, Any]) -> Facts:
        return cls(state, contact.get("customer"), contact.get("log") or [], contact.get("sent") or [])


def decide(facts: Facts, settings: CartSettings, now: datetime) -> CartDecision:
    """What the journey does at `now`: wait for its moment, end, skip (recorded) or send."""
    state = facts.state
    token = state.get("token")
    if state.get("status") != "waiting" or not token or not state.get("last_activity_at"):
        return CartDecision("end", {"due_at": None}, reason=str(state.get("reason") or state.get("status") or "idle"))
    if not settings.enabled or settings.recovery_url_template is None:
        return CartDecision("end", {"status": "ended", "reason": "disabled", "due_at": None}, reason="disabled")
    last = as_utc(state["last_activity_at"])
    due = last + timedelta(hours=settings.delay_hours)
    if due > now:
        return CartDecision("wait", {"due_at": due}, due_at=due)
    totals = (facts.customer or {}).get("totals") or {}
    bought = totals.get("last_purchase_at")
    if bought is not None and as_utc(bought) >= last:
        return CartDecision("end", {"status": "ended", "reason": "purchased", "due_at": None}, reason="purchased")
    if str(token) in reminded_tokens(state, facts.log):
        return CartDecision("end", {"status": "reminded", "reason": "already_reminded", "due_at": None},
                            reason="already_reminded")
    if not state.get("items"):
        return CartDecision("skip", {"status": "ended", "reason": "no_items", "due_at": None}, reason="no_items",
                            due_at=due)
    previous = last_reminder(facts.log, facts.sent)
    if previous is not None and now < previous + timedelta(days=settings.cooldown_days):
        return CartDecision("skip", {"status": "ended", "reason": "cooldown", "due_at": None}, reason="cooldown",
                            due_at=due)
    handled = [t for t in state.get("handled") or [] if t != token] + [token]
    return CartDecision("send", {"status": "reminded", "reason": None, "due_at": None,
                                 "handled": handled[-HANDLED_KEEP:], "reminded_at": now},
                        due_at=due, stale_after=due + STALE)
