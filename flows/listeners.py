"""The flows as the processes compose them: which flows the engine runs, which listener hears which signal.

One list each, used by the web app (dry runs, ingest) and the worker (runs,
outbox drains) alike. Nothing connects or registers itself on import.
"""

from __future__ import annotations

from delivery.attribution import Attribution
from delivery.flow import Flow
from flows.points import state as points
from flows.points.plan import points_flows
from flows.reminders import state as reminders
from flows.reminders.plan import RemindersFlow
from storage.signals import Signals


def delivery_flows(public_base: str) -> list[Flow]:
    """Fresh flow objects for one engine run (they cache per-run reads)."""
    return [RemindersFlow(public_base), *points_flows(public_base)]


def connect_listeners(signals: Signals) -> Signals:
    attribution = Attribution()
    signals.product_viewed.connect(reminders.on_product_viewed)
    signals.browser_linked.connect(reminders.on_browser_linked)
    signals.order_recorded.connect(reminders.on_order_recorded)
    signals.order_recorded.connect(attribution.on_order_recorded)
    signals.browser_events.connect(reminders.on_browser_events)
    signals.points_recorded.connect(points.on_points_recorded)
    return signals
