"""Keeps `customers.reminder` current at ingest, so the worker only queries an index.

Listeners on the in-process signals: a product view on a linked browser starts
a cycle when none is running; a link starts (or moves earlier) a cycle anchored
at the customer's first view across all their browsers; a paid order stops a
running cycle and is attributed as a conversion. Each listener is one
conditional write and safe to run twice. Never sends anything.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from bot.clock import as_utc
from scheduler.reminders.plan import hinted, index_for
from scheduler.reminders.timing import step_due_at
from storage import signals
from storage.database import Database
from storage.deliveries import DeliveryRepository
from storage.reminders import ReminderStateRepository, new_cycle
from storage.shop_settings import ReminderSettings, ShopSettingsRepository, TrackingSettings

log = logging.getLogger("linecrm.reminders")

CAMPAIGN = "reminders"
ENDED = ("done", "stopped", "disabled")


def _cycle(settings: ReminderSettings, anchor: datetime, now: datetime) -> dict[str, Any]:
    return new_cycle(anchor, step_due_at(anchor, settings.steps[0].delay_days), now)


async def on_product_viewed(
    database: Database, shop_id: str, line_user_id: str, product_id: str, viewed_at: datetime
) -> None:
    """A linked customer viewed a product: start a cycle at this view unless one is running."""
    settings = await ShopSettingsRepository(database).get(shop_id, ReminderSettings)
    if not settings.enabled:
        return
    anchor = as_utc(viewed_at)
    await ReminderStateRepository(database).start_cycle_if_idle(shop_id, line_user_id, _cycle(settings, anchor, anchor))


async def on_browser_linked(
    database: Database, shop_id: str, browser_id: str, line_user_id: str, now: datetime
) -> None:
    """A browser was linked: its earlier views count, from the customer's first view on any browser.

    Steps already overdue then are not all sent: the engine sends only the latest due one.
    """
    settings = await ShopSettingsRepository(database).get(shop_id, ReminderSettings)
    if not settings.enabled:
        return
    repo = ReminderStateRepository(database)
    customer = await repo.get(shop_id, line_user_id)
    if customer is None:
        return
    reminder = customer.get("reminder") or {}
    query: dict[str, Any] = {"shop_id": shop_id, "line_user_id": line_user_id}
    ended_at = as_utc(reminder["updated_at"]) if reminder.get("status") in ENDED and reminder.get("updated_at") else None
    if ended_at is not None:
        query["last_viewed_at"] = {"$gt": ended_at}  # only views after the last cycle ended start a new one
    first = None
    views = hinted(database["product_views"].find(query, {"first_viewed_at": 1}),
                   index_for("product_views", "shop_id", "line_user_id"))
    async for view in views.sort("first_viewed_at", ASCENDING).limit(1):
        first = view
    if first is None or not first.get("first_viewed_at"):
        return
    anchor = as_utc(first["first_viewed_at"])
    if ended_at is not None:
        anchor = max(anchor, ended_at)
    cycle = _cycle(settings, anchor, as_utc(now))
    if reminder.get("status") == "active":
        await repo.reanchor_unsent(shop_id, line_user_id, cycle)
    else:
        await repo.start_cycle_if_idle(shop_id, line_user_id, cycle)


async def on_order_recorded(database: Database, order: dict[str, Any], previous: dict[str, Any] | None,
                            now: datetime) -> None:
    """A paid order stops the running cycle and may be a reminder's conversion; a reversal undoes that."""
    line_user_id = order.get("line_user_id")
    shop_id = order["shop_id"]
    deliveries = DeliveryRepository(database)
    if order.get("status") != "paid":
        if previous is not None and previous.get("status") == "paid":
            await deliveries.remove_conversion(shop_id, order["order_id"])
        return
    if not line_user_id:
        return
    ordered_at = as_utc(order.get("ordered_at") or order.get("created_at") or now)
    await ReminderStateRepository(database).stop_cycle(shop_id, line_user_id, ordered_at, as_utc(now))
    tracking = await ShopSettingsRepository(database).get(shop_id, TrackingSettings)
    await deliveries.attribute_order(order, tracking.attribution_window_days, CAMPAIGN)


signals.product_viewed.connect(on_product_viewed)
signals.browser_linked.connect(on_browser_linked)
signals.order_recorded.connect(on_order_recorded)
