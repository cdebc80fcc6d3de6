"""Which flow hears which ingest signal: the one list, used by the web app and the worker alike.

The web app sends the signals as it ingests (tracking, links, orders); the
worker runs again the intents a crash left behind (`storage.signals`), so both
processes connect the same listeners. Nothing connects itself on import.
"""

from __future__ import annotations

from flows.reminders import state as reminders
from storage.signals import Signals


def connect_listeners(signals: Signals) -> Signals:
    signals.product_viewed.connect(reminders.on_product_viewed)
    signals.browser_linked.connect(reminders.on_browser_linked)
    signals.order_recorded.connect(reminders.on_order_recorded)
    return signals
