"""Keeps the contacts' `flows.reminders` and `reminder_profiles` current at ingest, so the engine reads by `_id`.

Listeners on the durable ingest signals (connected in `flows.listeners`): a product view on a linked browser starts
a cycle when none is running and refreshes that product's entry in the
customer's profile; a link starts (or moves earlier) a cycle anchored at the
customer's first view across all their browsers and rebuilds the profile's
views (and the previous owner's, when the browser moved); a paid order stops a
running cycle and records the products bought (attribution is the delivery
layer's, `delivery.attribution`, for every flow).
Every write sets values recomputed from the source rows (or `$max` of event
times), never a blind `$inc`, so each listener is safe to run twice. Never sends.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pymongo.asynchronous.cursor import AsyncCursor

from core.clock import as_utc
from flows.reminders.plan import STATE_KEY
from flows.reminders.profile import VIEWS_KEEP, field_key, paid_items, trim, view_entry, views_from_rows
from flows.reminders.timing import step_due_at
from storage.contacts import ContactRepository
from storage.database import Database, Document, find_by_ids
from storage.keys import browser_key, customer_key, view_key
from storage.reminders import ReminderProfileRepository
from storage.shop_settings import ReminderSettings, ShopSettingsRepository

log = logging.getLogger("linecrm.reminders")

ENDED = ("done", "stopped", "disabled")
FIELD = f"flows.{STATE_KEY}"


def cycle_id_for(anchor: datetime) -> str:
    """Deterministic from the cycle's first view, so two processes starting it agree."""
    return f"c{int(anchor.timestamp() * 1000)}"


def new_cycle(settings: ReminderSettings, anchor: datetime, now: datetime) -> dict[str, Any]:
    """The sub-state of a cycle that starts at `anchor` (the first product view)."""
    return {"cycle_id": cycle_id_for(anchor), "cycle_started_at": anchor, "steps_sent": [], "next_step": 0,
            "due_at": step_due_at(anchor, settings.steps[0].delay_days), "status": "active", "attempts": 0,
            "updated_at": now}


async def start_cycle_if_idle(database: Database, shop_id: str, line_user_id: str, cycle: dict[str, Any]) -> bool:
    """Start a cycle unless one is running (a view during a cycle does not move its anchor)."""
    return await ContactRepository(database).put_flow_state(
        shop_id, line_user_id, STATE_KEY, cycle, due_at=cycle["due_at"], when={f"{FIELD}.status": {"$ne": "active"}})


async def reanchor_unsent(database: Database, shop_id: str, line_user_id: str, cycle: dict[str, Any]) -> bool:
    """Move a running cycle to an earlier first view, only while nothing was sent and no worker holds it."""
    return await ContactRepository(database).put_flow_state(
        shop_id, line_user_id, STATE_KEY, cycle, due_at=cycle["due_at"], create=False,
        when={f"{FIELD}.status": "active", f"{FIELD}.steps_sent": {"$size": 0}, "claim": None,
              f"{FIELD}.cycle_started_at": {"$gt": cycle["cycle_started_at"]}})


async def stop_cycle(database: Database, shop_id: str, line_user_id: str, after: datetime, now: datetime) -> bool:
    """A purchase at `after` stops a cycle that started before it (a worker holding it loses its settle)."""
    return await ContactRepository(database).put_flow_state(
        shop_id, line_user_id, STATE_KEY, {"status": "stopped", "due_at": None, "updated_at": now}, due_at=None,
        create=False, when={f"{FIELD}.status": "active", f"{FIELD}.cycle_started_at": {"$lte": after}})


async def reminder_state(database: Database, shop_id: str, line_user_id: str) -> Document:
    """The contact's `flows.reminders` (`{}` before any cycle)."""
    contact = await ContactRepository(database).get(shop_id, line_user_id)
    return dict(((contact or {}).get("flows") or {}).get(STATE_KEY) or {})


VIEW_FIELDS = {"shop_id": 1, "product_id": 1, "line_user_id": 1, "count": 1, "first_viewed_at": 1,
               "last_viewed_at": 1}


def customer_views_cursor(database: Database, shop_id: str, line_user_id: str) -> AsyncCursor[Document]:
    """All `product_views` rows attributed to the customer (the link-time rebuild; not a hot path)."""
    return database["product_views"].find({"shop_id": shop_id, "line_user_id": line_user_id}, VIEW_FIELDS)


def customer_orders_cursor(database: Database, shop_id: str, line_user_id: str) -> AsyncCursor[Document]:
    """The customer's orders (any status: filtered in Python, so the filter stays the index's fields)."""
    return database["orders"].find({"shop_id": shop_id, "line_user_id": line_user_id},
                                   {"status": 1, "ordered_at": 1, "created_at": 1, "line_user_id": 1,
                                    "items.product_id": 1})


async def customer_views(database: Database, shop_id: str, line_user_id: str) -> list[Document]:
    return [row async for row in customer_views_cursor(database, shop_id, line_user_id)]


async def rebuild_views(database: Database, shop_id: str, line_user_id: str, now: datetime,
                        rows: list[Document] | None = None) -> list[Document]:
    """Recompute the profile's whole `views` map from the customer's rows; returns the rows."""
    if rows is None:
        rows = await customer_views(database, shop_id, line_user_id)
    await ReminderProfileRepository(database).replace_views(shop_id, line_user_id, views_from_rows(rows), now)
    return rows


async def refresh_view(database: Database, shop_id: str, line_user_id: str, product_id: str, now: datetime) -> None:
    """Recompute one product's profile entry from the customer's browsers' rows, read by `_id`."""
    customer = await database["customers"].find_one({"_id": customer_key(shop_id, line_user_id)},
                                                    {"browser_ids": 1})
    browsers = (customer or {}).get("browser_ids") or []
    keys = [view_key(shop_id, browser, product_id) for browser in browsers]
    rows = [row for row in await find_by_ids(database["product_views"], keys, VIEW_FIELDS)
            if row.get("line_user_id") == line_user_id]
    if not rows:  # browser_ids out of step with the views (e.g. a link being written): rebuild from the index
        await rebuild_views(database, shop_id, line_user_id, now)
        return
    profiles = ReminderProfileRepository(database)
    key = field_key(product_id)
    entry = view_entry(rows)
    current = dict(((await profiles.get(shop_id, line_user_id)) or {}).get("views") or {})
    drop: list[str] = []
    if entry is not None:
        current[key] = entry
        drop = trim(current, VIEWS_KEEP) if len(current) > VIEWS_KEEP else []
    await profiles.update_views(shop_id, line_user_id, {} if key in drop else {key: entry}, drop, now)


async def on_product_viewed(
    database: Database, shop_id: str, line_user_id: str, product_id: str, viewed_at: datetime
) -> None:
    """A linked customer viewed a product: refresh the profile; start a cycle at this view unless one runs.

    The profile is kept even while reminders are off, so switching them on finds it complete.
    """
    await refresh_view(database, shop_id, line_user_id, product_id, as_utc(viewed_at))
    settings = await ShopSettingsRepository(database).get(shop_id, ReminderSettings)
    if not settings.enabled:
        return
    anchor = as_utc(viewed_at)
    await start_cycle_if_idle(database, shop_id, line_user_id, new_cycle(settings, anchor, anchor))


async def on_browser_linked(
    database: Database, shop_id: str, browser_id: str, line_user_id: str, now: datetime
) -> None:
    """A browser was linked: its earlier views count, from the customer's first view on any browser.

    The profile's views are rebuilt from all the customer's rows (so two browsers
    merge exactly, however often this runs); when the browser moved from another
    customer, that customer's profile is rebuilt too. Steps already overdue then
    are not all sent: the engine sends only the latest due one.
    """
    now = as_utc(now)
    rows = await rebuild_views(database, shop_id, line_user_id, now)
    browser = await database["browsers"].find_one({"_id": browser_key(shop_id, browser_id)}, {"link_history": 1})
    history = (browser or {}).get("link_history") or []
    previous = history[-1].get("previous_line_user_id") if history else None
    if previous and previous != line_user_id and history[-1].get("line_user_id") == line_user_id:
        await rebuild_views(database, shop_id, previous, now)
    settings = await ShopSettingsRepository(database).get(shop_id, ReminderSettings)
    if not settings.enabled:
        return
    reminder = await reminder_state(database, shop_id, line_user_id)
    ended_at = as_utc(reminder["updated_at"]) if reminder.get("status") in ENDED and reminder.get("updated_at") else None
    # Only views after the last cycle ended start a new one.
    firsts = [as_utc(row["first_viewed_at"]) for row in rows if row.get("first_viewed_at")
              and (ended_at is None or as_utc(row.get("last_viewed_at") or row["first_viewed_at"]) > ended_at)]
    if not firsts:
        return
    anchor = min(firsts)
    if ended_at is not None:
        anchor = max(anchor, ended_at)
    cycle = new_cycle(settings, anchor, now)
    if reminder.get("status") == "active":
        await reanchor_unsent(database, shop_id, line_user_id, cycle)
    else:
        await start_cycle_if_idle(database, shop_id, line_user_id, cycle)


async def on_order_recorded(database: Database, order: dict[str, Any], previous: dict[str, Any] | None,
                            now: datetime) -> None:
    """A paid order stops the customer's running cycle (if it started before the order) and keeps the
    profile's `bought` map: a paid order moves its products' dates forward; an order that stops counting
    for a customer (refund, other items, other customer) has those products recomputed from their orders.
    """
    await update_bought(database, order, previous, as_utc(now))
    line_user_id = order.get("line_user_id")
    if order.get("status") != "paid" or not line_user_id:
        return
    ordered_at = as_utc(order.get("ordered_at") or order.get("created_at") or now)
    await stop_cycle(database, order["shop_id"], line_user_id, ordered_at, as_utc(now))


async def on_browser_events(database: Database, shop_id: str, events: list[dict[str, Any]], now: datetime) -> None:
    """A `purchase` browser event from a linked browser stops the customer's cycle as an order does (the
    order itself, when the shop posts it, then records the products bought)."""
    for event in events:
        if event.get("type") == "purchase" and event.get("line_user_id"):
            at = as_utc(event.get("received_at") or now)
            await stop_cycle(database, shop_id, event["line_user_id"], at, as_utc(now))


async def update_bought(database: Database, order: dict[str, Any], previous: dict[str, Any] | None,
                        now: datetime) -> None:
    shop_id = order["shop_id"]
    profiles = ReminderProfileRepository(database)
    user, bought = paid_items(order)
    if user is not None:
        await profiles.add_bought(shop_id, user, {field_key(pid): at for pid, at in bought.items()}, now)
    old_user, old_bought = paid_items(previous)
    gone = [pid for pid in old_bought if old_user != user or pid not in bought]
    if old_user is None or not gone:
        return
    latest: dict[str, datetime | None] = {field_key(pid): None for pid in gone}
    async for other in customer_orders_cursor(database, shop_id, old_user):  # this customer's orders only; the changed order is stored already
        _, items = paid_items(other)
        for pid, at in items.items():
            key = field_key(pid)
            if key in latest and (latest[key] is None or at > latest[key]):  # type: ignore[operator]
                latest[key] = at
    await profiles.set_bought(shop_id, old_user, latest, now)

