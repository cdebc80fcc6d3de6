"""The flows as the processes compose them: which flows the engine runs, which listener hears which signal.

One list each, used by the web app (dry runs, ingest) and the worker (runs,
outbox drains) alike. Nothing connects or registers itself on import.
"""

from __future__ import annotations

from delivery.attribution import Attribution
from delivery.flow import Flow
from flows.broadcasts.attribution import broadcast_records
from flows.carts import state as carts
from flows.carts.journey import FLOW as CART_FLOW
from flows.carts.plan import CartsFlow
from flows.carts.recovery import recovered_by
from flows.points import state as points
from flows.points.plan import points_flows
from flows.reminders import state as reminders
from flows.reminders.plan import RemindersFlow
from flows.segments import tags as tag_rules
from flows.sequences import ingest as sequences
from flows.sequences.plan import SequencesFlow
from storage.signals import Signals


def delivery_flows(public_base: str) -> list[Flow]:
    """Fresh flow objects for one engine run (they cache per-run reads)."""
    return [RemindersFlow(public_base), SequencesFlow(), CartsFlow(public_base), *points_flows(public_base)]


def connect_listeners(signals: Signals) -> Signals:
    attribution = Attribution(sources=[broadcast_records], click_rules={CART_FLOW: recovered_by})
    signals.product_viewed.connect(reminders.on_product_viewed)
    signals.browser_linked.connect(reminders.on_browser_linked)
    signals.order_recorded.connect(reminders.on_order_recorded)
    signals.order_recorded.connect(attribution.on_order_recorded)
    signals.browser_events.connect(reminders.on_browser_events)
    # Carts (カゴ落ち): carts and their journeys from tracking events, orders and links.
    signals.browser_events.connect(carts.on_browser_events)
    signals.order_recorded.connect(carts.on_order_recorded)
    signals.browser_linked.connect(carts.on_browser_linked)
    # Step sequences: triggers start runs, goals end them (after attribution, which a goal's order shares).
    signals.browser_events.connect(sequences.on_browser_events)
    signals.order_recorded.connect(sequences.on_order_recorded)
    signals.customers_followed.connect(sequences.on_customers_followed)
    signals.customer_followed.connect(sequences.on_customer_followed)
    signals.browser_linked.connect(sequences.on_browser_linked)
    signals.tags_changed.connect(sequences.on_tags_changed)
    # Tag rules (seed 003, `PUT /settings/tags`): the tags they write are tags_changed signals like any other.
    signals.order_recorded.connect(tag_rules.on_order_recorded)
    signals.tags_changed.connect(tag_rules.on_tags_changed)
    # Points notices: a posted transaction makes the earned notice and the expiry reminder look again.
    signals.points_recorded.connect(points.on_points_recorded)
    return signals
