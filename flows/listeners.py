"""The flows as the processes compose them: which flows the engine runs, which listener hears which signal.

One list each, used by the web app (dry runs, ingest) and the worker (runs,
outbox drains) alike. Nothing connects or registers itself on import.
"""

from __future__ import annotations

from delivery.attribution import Attribution
from delivery.flow import Flow
from flows.carts import state as carts
from flows.carts.journey import FLOW as CART_FLOW
from flows.carts.plan import CartsFlow
from flows.carts.recovery import recovered_by
from flows.reminders import state as reminders
from flows.reminders.plan import RemindersFlow
from storage.signals import Signals


def delivery_flows(public_base: str) -> list[Flow]:
    """Fresh flow objects for one engine run (they cache per-run reads)."""
    return [RemindersFlow(public_base), CartsFlow(public_base)]


def connect_listeners(signals: Signals) -> Signals:
    attribution = Attribution(click_rules={CART_FLOW: recovered_by})
    signals.product_viewed.connect(reminders.on_product_viewed)
    signals.browser_linked.connect(reminders.on_browser_linked)
    signals.order_recorded.connect(reminders.on_order_recorded)
    signals.order_recorded.connect(attribution.on_order_recorded)
    signals.browser_events.connect(reminders.on_browser_events)
    signals.browser_events.connect(carts.on_browser_events)
    signals.order_recorded.connect(carts.on_order_recorded)
    signals.browser_linked.connect(carts.on_browser_linked)
    return signals
