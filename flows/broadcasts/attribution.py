"""Broadcast records of one customer, for attribution (`delivery.attribution` source).

A broadcast's recipients are not in contacts' logs (that would be a write per recipient): the order's
customer is looked up in the shop's broadcasts that started within the window (an index range, few
documents), and in each of them the one batch whose range holds the customer (bisected from the
broadcast's batch bounds, then one `_id` read). Cost per order: independent of audience sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from core.clock import as_utc
from delivery.attribution import order_time
from flows.broadcasts.plan import FLOW
from storage.broadcasts import MAX_SPAN, BroadcastRepository, plan_recipients
from storage.database import Database
from storage.signals import RetryLater


async def broadcast_records(database: Database, order: Mapping[str, Any],
                            window: timedelta) -> list[Mapping[str, Any]]:
    """The customer's sent/held broadcast records at most `window` before the order."""
    user = str(order.get("line_user_id") or "")
    ordered_at = order_time(order)
    repo = BroadcastRepository(database)
    found: list[Mapping[str, Any]] = []
    for broadcast in await repo.started_between(str(order["shop_id"]), ordered_at - window - MAX_SPAN, ordered_at):
        batch = await repo.batch_of(broadcast, user)
        if batch is None or user not in (batch.get("users") or []):
            continue
        if batch.get("claim") is not None:
            raise RetryLater("a worker is sending this customer's broadcast batch")
        plan, settled_at = batch.get("plan") or {}, batch.get("settled_at")
        if batch.get("state") != "done" or settled_at is None:
            continue
        delivered = (batch.get("outcome") or {}).get("status") == "sent"
        status = "held" if user in (plan.get("held") or []) \
            else "sent" if delivered and plan_recipients([user], plan) else None
        if status is None:
            continue
        at = as_utc(settled_at)
        found.append({"flow": FLOW, "key": broadcast.get("key"), "step": None, "status": status, "at": at,
                      "sent_at": at if status == "sent" else None, "cycle": broadcast.get("broadcast_id")})
    return found
