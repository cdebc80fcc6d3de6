"""Which flow's message an order follows: conversions for every flow, treated and holdout alike.

An `order_recorded` listener. A paid order is a conversion of a flow when that
flow sent the customer a message — or held one back (holdout: "would have
been sent") — within the shop's attribution window before the order; the
latest such record of each flow wins, so each flow counts the order at most
once (flows are reported side by side, never summed). A flow may add its own
rule (`rules`), or one that also sees when each message was first clicked
(`click_rules`): a cart reminder counts an order carrying its cart token,
whatever the window, or one after a click on it within the window. A
cancelled or refunded order stops being a conversion.
An order that lands while a worker holds the customer's contact is attributed
when the worker has settled (the signal's intent is drained again later).
The customer's recent records are in their contact (`log`), so the common
case — an order from a customer we never messaged — is one `_id` read. A flow
whose records are not in contacts (broadcasts: one batch record for 500
recipients) adds a `source` that finds this customer's records by an indexed
query of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from core.clock import as_utc
from storage.contacts import ContactRepository
from storage.database import Database, Document
from storage.delivery_log import DeliveryLog
from storage.keys import compose
from storage.shop_settings import ShopSettingsRepository, TrackingSettings
from storage.signals import RetryLater

ATTRIBUTED = ("sent", "held")

# (order, the flow's records of this customer, window) → the record the order converts, or None.
Rule = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], timedelta], Mapping[str, Any] | None]
# A rule that also needs to know when each sent record was first clicked (key → time): the clicks are read
# only for the flows that have such a rule, and only when the customer has their records.
ClickRule = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], timedelta, Mapping[str, datetime]],
                     Mapping[str, Any] | None]
# (database, order, window) → records of the order's customer kept outside contacts, shaped like a contact's
# `log` entries ({flow, key, step, status, at, sent_at, cycle}); raises RetryLater when one may be missing yet.
Source = Callable[[Database, Mapping[str, Any], timedelta], Awaitable[list[Mapping[str, Any]]]]


def record_time(entry: Mapping[str, Any]) -> datetime:
    return as_utc(entry.get("sent_at") or entry["at"])


def latest_within(order: Mapping[str, Any], entries: Sequence[Mapping[str, Any]],
                  window: timedelta) -> Mapping[str, Any] | None:
    """The default rule: the latest sent or held record at most `window` before the order."""
    ordered_at = order_time(order)
    inside = [e for e in entries if e.get("status") in ATTRIBUTED and ordered_at - window <= record_time(e) <= ordered_at]
    return max(inside, key=record_time) if inside else None


def order_time(order: Mapping[str, Any]) -> datetime:
    return as_utc(order.get("ordered_at") or order["created_at"])


def conversions_for(order: Mapping[str, Any], log: Sequence[Mapping[str, Any]], window: timedelta,
                    rules: Mapping[str, Rule], click_rules: Mapping[str, ClickRule] | None = None,
                    clicks: Mapping[str, datetime] | None = None) -> list[Document]:
    """The order's conversion per flow (pure); `clicks` are the first clicks of the records' keys."""
    by_flow: dict[str, list[Mapping[str, Any]]] = {}
    for entry in log:
        by_flow.setdefault(str(entry.get("flow")), []).append(entry)
    found = []
    for flow, entries in sorted(by_flow.items()):
        click_rule = (click_rules or {}).get(flow)
        if click_rule is not None:
            chosen = click_rule(order, entries, window, clicks or {})
        else:
            chosen = rules.get(flow, latest_within)(order, entries, window)
        if chosen is None:
            continue
        entry = chosen
        found.append({
            "_id": compose(order["shop_id"], order["order_id"], flow), "shop_id": order["shop_id"], "flow": flow,
            "order_id": order["order_id"], "line_user_id": order["line_user_id"], "key": entry.get("key"),
            "step": entry.get("step"), "group": "holdout" if entry.get("status") == "held" else "treated",
            "delivery_at": record_time(entry), "revenue": int(order.get("total") or 0),
            "ordered_at": order_time(order),
        })
    return found


class Attribution:
    """The listener, with each flow's extra rule (composed in `flows.listeners`)."""

    def __init__(self, rules: Mapping[str, Rule] | None = None, sources: Sequence[Source] = (),
                 click_rules: Mapping[str, ClickRule] | None = None) -> None:
        self.rules = dict(rules or {})
        self.sources = list(sources)
        self.click_rules = dict(click_rules or {})

    async def on_order_recorded(self, database: Database, order: dict[str, Any], previous: dict[str, Any] | None,
                                now: datetime) -> None:
        records = DeliveryLog(database)
        if order.get("status") != "paid":
            if previous is not None and previous.get("status") == "paid":
                await records.remove_conversions(order["shop_id"], order["order_id"])
            return
        if not order.get("line_user_id"):
            return
        contact = await ContactRepository(database).get(order["shop_id"], order["line_user_id"])
        if contact is not None and contact.get("claim") is not None:
            # A worker may be sending to this customer right now: its record is not in the log yet.
            raise RetryLater("the contact is held by a worker")
        log: list[Mapping[str, Any]] = [e for e in (contact or {}).get("log") or [] if e.get("status") in ATTRIBUTED]
        if not log and not self.sources:
            return
        tracking = await ShopSettingsRepository(database).get(order["shop_id"], TrackingSettings)
        window = timedelta(days=tracking.attribution_window_days)
        for source in self.sources:
            log += [e for e in await source(database, order, window) if e.get("status") in ATTRIBUTED]
        if log:
            keys = [str(e["key"]) for e in log if e.get("flow") in self.click_rules and e.get("status") == "sent"
                    and e.get("key")]
            clicks = await records.first_clicks(keys) if keys else {}
            await records.add_conversions(conversions_for(order, log, window, self.rules, self.click_rules, clicks))
