"""What a cart becomes after an event: pure functions over the stored cart document (`storage.carts`).

Two sources feed one cart per token: the tracking script's `add_to_cart` /
`checkout_started` / `purchase` events (lines added one at a time; replays are
recognised by event ID) and the shop platform's `PUT /carts/{token}` (the whole
list, authoritative; `items: []` empties the cart; a write older than the last
one is ignored). An order or a purchase ends a cart for good. Each function
returns the new content fields, or None when nothing changes — so a retried
write changes nothing, not even the cart's last activity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.clock import as_utc
from storage.database import Document

MAX_LINES = 100
MAX_QUANTITY = 100_000
EVENT_IDS_KEEP = 50
# `ref_price`: the catalogue price when a line arrived without one (values the cart; the message shows the
# catalogue's current price for such a line).
LINE_FIELDS = ("product_id", "variant_id", "quantity", "price", "ref_price", "title", "image_url")
CART_EVENTS = ("add_to_cart", "checkout_started", "purchase")


@dataclass(frozen=True)
class PlatformCart:
    """A shop platform's full view of a cart (`PUT /carts/{token}`)."""

    items: Sequence[Mapping[str, Any]]
    stage: str
    line_user_id: str | None = None  # resolved from line_user_id / browser_id / customer_id
    browser_id: str | None = None
    customer_id: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class CartClock:
    """When the change happens and the shop's delay (for the abandonment moment)."""

    now: datetime
    delay: timedelta
    prices: Mapping[str, int] = field(default_factory=dict)  # catalogue prices of lines that bring none


def line_value(line: Mapping[str, Any]) -> int:
    price = line.get("price")
    unit = price if price is not None else line.get("ref_price")
    return int(unit or 0) * int(line.get("quantity") or 0)


def cart_value(items: Sequence[Mapping[str, Any]]) -> int:
    return sum(line_value(line) for line in items)


def abandoned_at(state: str, items: Sequence[Any], last_activity: datetime, previous: datetime | None,
                 clock: CartClock) -> datetime | None:
    """An open cart is abandoned `delay` after its last activity; one that ended keeps a moment already passed."""
    if state == "open" and items:
        return last_activity + clock.delay
    if previous is not None and as_utc(previous) <= clock.now:
        return as_utc(previous)
    return None


def _line(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {name: raw[name] for name in LINE_FIELDS if raw.get(name) is not None}


def _material(cart: Mapping[str, Any]) -> tuple[Any, ...]:
    return (cart.get("items") or [], cart.get("stage"), cart.get("state"), cart.get("line_user_id"),
            cart.get("browser_id"), cart.get("customer_id"))


def apply_platform(current: Document | None, update: PlatformCart, clock: CartClock) -> dict[str, Any] | None:
    """The platform's list replaces the cart's (an order ended it for good; an older write is ignored)."""
    if current is not None and current.get("state") == "ordered":
        return None
    stored_at = current.get("platform_updated_at") if current else None
    if update.updated_at is not None and stored_at is not None and as_utc(update.updated_at) < as_utc(stored_at):
        return None
    items = [_line(item) for item in update.items][:MAX_LINES]
    state = "open" if items else "emptied"
    fields: dict[str, Any] = {
        "items": items, "stage": update.stage, "state": state,
        "line_user_id": update.line_user_id or (current or {}).get("line_user_id"),
        "browser_id": update.browser_id or (current or {}).get("browser_id"),
        "customer_id": update.customer_id or (current or {}).get("customer_id"),
    }
    same_moment = update.updated_at is None or (stored_at is not None and as_utc(stored_at) == as_utc(update.updated_at))
    if current is not None and _material(current) == _material(fields) and same_moment:
        return None  # a retry: not even an activity
    at = min(as_utc(update.updated_at), clock.now) if update.updated_at is not None else clock.now
    last = max(at, as_utc(current["last_activity_at"])) if current and current.get("last_activity_at") else at
    fields.update({
        "value": cart_value(items), "last_activity_at": last, "source": "platform",
        "platform_updated_at": update.updated_at if update.updated_at is not None else stored_at,
        "abandoned_at": abandoned_at(state, items, last, (current or {}).get("abandoned_at"), clock),
    })
    return fields


def apply_events(current: Document | None, events: Sequence[Mapping[str, Any]], clock: CartClock) -> dict[str, Any] | None:
    """Browser events of one cart token, in order; events already applied (by ID) and events after an order
    change nothing. An add puts a line in the cart (or adds to its quantity), a checkout moves the cart to
    the checkout stage, a purchase ends it (a purchase of a cart never seen is kept as an ordered cart, so that
    a late add cannot reopen it)."""
    cart: dict[str, Any] = {
        "items": [dict(line) for line in (current or {}).get("items") or []],
        "stage": (current or {}).get("stage") or "cart",
        "state": (current or {}).get("state") or "open",
    }
    applied = list((current or {}).get("event_ids") or [])
    seen = set(applied)
    last = as_utc(current["last_activity_at"]) if current and current.get("last_activity_at") else None
    changed = False
    for event in events:
        event_id = str(event.get("event_id") or "")
        kind = event.get("type")
        if not event_id or event_id in seen or kind not in CART_EVENTS:
            continue
        seen.add(event_id)
        applied.append(event_id)
        changed = True
        if cart["state"] == "ordered":
            continue
        at = as_utc(event.get("received_at") or clock.now)
        if event.get("line_user_id"):
            cart["line_user_id"] = event["line_user_id"]
        if event.get("browser_id"):
            cart["browser_id"] = event["browser_id"]
        if kind == "purchase":
            cart.update(state="ordered", ordered_at=at, order_id=event.get("order_id"))
            continue
        last = max(last, at) if last is not None else at
        if kind == "add_to_cart" and event.get("product_id"):
            _add_line(cart["items"], event, clock.prices)
            cart.update(state="open", stage="cart")
        elif kind == "checkout_started":
            cart.update(state="open", stage="checkout")
    if not changed:
        return None
    cart["event_ids"] = applied[-EVENT_IDS_KEEP:]
    cart["value"] = cart_value(cart["items"])
    if last is not None:
        cart["last_activity_at"] = last
        cart["abandoned_at"] = abandoned_at(cart["state"], cart["items"], last, (current or {}).get("abandoned_at"),
                                            clock)
    cart["source"] = "browser"
    return cart


def _add_line(items: list[dict[str, Any]], event: Mapping[str, Any], prices: Mapping[str, int]) -> None:
    quantity = int(event.get("quantity") or 1)
    value = event.get("value")
    unit = int(value) // quantity if value is not None else None
    for line in items:
        if line.get("product_id") == event["product_id"] and line.get("variant_id") == event.get("variant_id"):
            line["quantity"] = min(MAX_QUANTITY, int(line.get("quantity") or 0) + quantity)
            if unit is not None:
                line["price"] = unit
            elif line.get("price") is None and line.get("ref_price") is None and event["product_id"] in prices:
                line["ref_price"] = prices[event["product_id"]]
            return
    if len(items) < MAX_LINES:
        items.append(_line({"product_id": event["product_id"], "variant_id": event.get("variant_id"),
                            "quantity": quantity, "price": unit,
                            "ref_price": prices.get(str(event["product_id"])) if unit is None else None}))


def mark_ordered(current: Document | None, order_id: str, ordered_at: datetime, clock: CartClock) -> dict[str, Any] | None:
    """An order carrying the cart's token ends it. A token never seen is kept as an ordered cart with no lines,
    so a cart write arriving after its order (a late retry) cannot reopen it."""
    if current is not None and current.get("state") == "ordered":
        return None
    fields: dict[str, Any] = {"state": "ordered", "order_id": order_id, "ordered_at": ordered_at,
                              "abandoned_at": abandoned_at("ordered", [], ordered_at, (current or {}).get("abandoned_at"),
                                                           CartClock(min(clock.now, ordered_at), clock.delay))}
    if current is None:
        fields.update(items=[], stage="cart", value=0)
    return fields


def attach_owner(current: Document | None, line_user_id: str) -> dict[str, Any] | None:
    """A browser that touched the cart was linked: the cart is that customer's (an ended cart stays as it was)."""
    if current is None or current.get("line_user_id") == line_user_id or current.get("state") != "open":
        return None
    return {"line_user_id": line_user_id}


def prices_needed(events: Sequence[Mapping[str, Any]]) -> set[str]:
    """Products added without a price: their catalogue price values the cart."""
    return {str(e["product_id"]) for e in events
            if e.get("type") == "add_to_cart" and e.get("product_id") and e.get("value") is None}
