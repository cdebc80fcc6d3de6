"""Keeps carts and the customers' cart journeys current at ingest, so the engine reads nothing but the contact.

- `record_platform_cart`: a shop platform's `PUT /carts/{token}` (the whole list; `items: []` empties it);
- `on_browser_events` (`browser_events`): the tracking script's add-to-cart, checkout and purchase events
  with a cart token; a purchase from a linked browser ends the customer's journey;
- `on_order_recorded` (`order_recorded`): an order carrying a cart token ends that cart; a paid order ends
  the customer's journey when its cart was last active before the order;
- `on_browser_linked` (`browser_linked`): the carts of a browser that is linked now become its customer's,
  and the latest arms the journey.

After every cart write the journey is synced from the stored cart (`flows.carts.journey.arm`), also when
the write changed nothing: a replay (the outbox drain, a platform's retry) repairs a journey write lost to a
crash, and the journey's filters make a late or repeated sync change nothing. Never sends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from core.clock import as_utc
from flows.carts.cart import (
    CART_EVENTS,
    CartClock,
    PlatformCart,
    apply_events,
    apply_platform,
    attach_owner,
    mark_ordered,
    prices_needed,
)
from flows.carts.journey import STATE_KEY, Write, arm, purchased
from storage.carts import CartRepository, Changed
from storage.contacts import ContactRepository
from storage.database import Database, Document
from storage.orders import Identity, OrderRepository
from storage.products import ProductRepository
from storage.shop_settings import CartSettings, ShopSettingsRepository


async def _settings(database: Database, shop_id: str) -> CartSettings:
    return await ShopSettingsRepository(database).get(shop_id, CartSettings)


def _clock(settings: CartSettings, now: datetime, prices: Mapping[str, int] | None = None) -> CartClock:
    return CartClock(as_utc(now), timedelta(hours=settings.delay_hours), dict(prices or {}))


async def _write(database: Database, shop_id: str, line_user_id: str, write: Write) -> bool:
    return await ContactRepository(database).put_flow_state(shop_id, line_user_id, STATE_KEY, write.fields,
                                                            due_at=write.due_at, when=write.when, create=write.create)


async def sync_journey(database: Database, cart: Document, settings: CartSettings, now: datetime) -> bool:
    """Bring the owner's journey in line with this cart (True when the journey changed)."""
    write = arm(cart, settings, as_utc(now))
    if write is None:
        return False
    return await _write(database, cart["shop_id"], cart["line_user_id"], write)


async def record_platform_cart(database: Database, shop_id: str, cart_token: str, update: PlatformCart,
                               now: datetime) -> Changed:
    """The platform's view of a cart: stored (unless older than what we have), then the journey synced."""
    settings = await _settings(database, shop_id)
    clock = _clock(settings, now)
    changed = await CartRepository(database).change(shop_id, cart_token, lambda c: apply_platform(c, update, clock),
                                                    clock.now)
    if changed.cart is not None:
        await sync_journey(database, changed.cart, settings, now)
    return changed


async def on_browser_events(database: Database, shop_id: str, events: list[dict[str, Any]], now: datetime) -> None:
    """Cart events update their carts (replays by event ID change nothing); a purchase by a linked browser
    ends its customer's journey as an order does."""
    by_token: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("type") in CART_EVENTS and event.get("cart_token"):
            by_token[str(event["cart_token"])].append(event)
    if by_token:
        settings = await _settings(database, shop_id)
        needed = prices_needed([e for own in by_token.values() for e in own])
        found = await ProductRepository(database).get_many(shop_id, needed) if needed else {}
        clock = _clock(settings, now, {pid: int(p.get("sale_price") or p.get("price") or 0)
                                       for pid, p in found.items()})
        carts = CartRepository(database)
        for token, own in by_token.items():
            changed = await carts.change(shop_id, token, partial(_apply_events, events=own, clock=clock), clock.now)
            if changed.cart is not None:
                await sync_journey(database, changed.cart, settings, now)
    for event in events:
        if event.get("type") == "purchase" and event.get("line_user_id"):
            at = as_utc(event.get("received_at") or now)
            await _write(database, shop_id, event["line_user_id"], purchased(at, as_utc(now)))


async def on_order_recorded(database: Database, order: dict[str, Any], previous: dict[str, Any] | None,
                            now: datetime) -> None:
    """A paid order ends the cart it carries the token of, and the customer's journey (a refund reopens nothing)."""
    if order.get("status") != "paid":
        return
    shop_id = order["shop_id"]
    ordered_at = as_utc(order.get("ordered_at") or order.get("created_at") or now)
    token = order.get("cart_token")
    if token:
        settings = await _settings(database, shop_id)
        clock = _clock(settings, now)
        changed = await CartRepository(database).change(
            shop_id, str(token), lambda c: mark_ordered(c, str(order["order_id"]), ordered_at, clock), clock.now)
        if changed.cart is not None:
            await sync_journey(database, changed.cart, settings, now)
    if order.get("line_user_id"):
        await _write(database, shop_id, order["line_user_id"], purchased(ordered_at, as_utc(now)))


async def on_browser_linked(database: Database, shop_id: str, browser_id: str, line_user_id: str,
                            now: datetime) -> None:
    """The browser's open carts are its new owner's; the journey takes the latest of them."""
    carts = CartRepository(database)
    found = await carts.by_browser(shop_id, browser_id)
    if not found:
        return
    settings = await _settings(database, shop_id)
    owned: list[Document] = []
    for cart in found:
        changed = await carts.change(shop_id, cart["cart_token"], lambda c: attach_owner(c, line_user_id), as_utc(now))
        if changed.cart is not None and changed.cart.get("line_user_id") == line_user_id:
            owned.append(changed.cart)
    for cart in sorted(owned, key=_activity):
        await sync_journey(database, cart, settings, now)


def _apply_events(current: Document | None, *, events: list[dict[str, Any]], clock: CartClock) -> dict[str, Any] | None:
    return apply_events(current, events, clock)


def _activity(cart: Document) -> datetime:
    return as_utc(cart.get("last_activity_at") or cart["created_at"])


async def put_cart(database: Database, shop_id: str, cart_token: str, body: Mapping[str, Any],
                   now: datetime) -> Changed:
    """A validated `PUT /carts/{token}` body (plain data): its owner resolved from the strongest identity given
    (LINE user, the browser's link, the shop's customer ID — as for orders), then recorded."""
    (owner,) = await OrderRepository(database).resolve_line_users(shop_id, [Identity(
        line_user_id=body.get("line_user_id"), browser_id=body.get("browser_id"), customer_id=body.get("customer_id"))])
    items: Sequence[Mapping[str, Any]] = body.get("items") or []
    update = PlatformCart(items=items, stage=str(body.get("stage") or "cart"), line_user_id=owner,
                          browser_id=body.get("browser_id"), customer_id=body.get("customer_id"),
                          updated_at=body.get("updated_at"))
    return await record_platform_cart(database, shop_id, cart_token, update, now)
