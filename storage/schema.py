"""Every index the processes ensure at start-up, listed in one place (nothing registers itself on import).

Both the web app and the worker pass `INDEXES` to `open_database`, so either
one started alone on an empty database creates all of them.
"""

from __future__ import annotations

from storage import (
    broadcasts,
    browsers,
    carts,
    contacts,
    customers,
    dashboard_sessions,
    delivery_log,
    link_tokens,
    orders,
    points,
    products,
    rate_budgets,
    segments,
    sequences,
    signals,
    tracking_batches,
    webhook_events,
)
from storage.database import IndexSpec

INDEXES: list[IndexSpec] = [
    *customers.INDEXES,
    *browsers.INDEXES,
    *tracking_batches.INDEXES,
    *webhook_events.INDEXES,
    *rate_budgets.INDEXES,
    *products.INDEXES,
    *orders.INDEXES,
    *points.INDEXES,
    *contacts.INDEXES,
    *delivery_log.INDEXES,
    *link_tokens.INDEXES,
    *signals.INDEXES,
    *sequences.INDEXES,
    *dashboard_sessions.INDEXES,
    *segments.INDEXES,
    *broadcasts.INDEXES,
    *carts.INDEXES,
]

# Indexes earlier versions made that now only cost writes; the web process drops them at start-up.
OBSOLETE_INDEXES: list[tuple[str, str]] = [*webhook_events.OBSOLETE_INDEXES]
