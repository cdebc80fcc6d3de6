"""Which orders a cart reminder recovered: the attribution rule of the cart flow (pure).

An order carrying the token of a cart we reminded (or, held out, would have
reminded) recovers it, whatever the attribution window. Without the token, an
order by the customer recovers their latest reminder when they clicked it
before ordering, within the window. A held-out customer cannot click a
message that was never sent: for them any order within the window stands in
for the click — which can only make the holdout look better, so the lift the
report shows errs on the low side, never flatters the reminders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from delivery.attribution import ATTRIBUTED, order_time, record_time


def recovered_by(order: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], window: timedelta,
                 clicks: Mapping[str, datetime]) -> Mapping[str, Any] | None:
    """The cart record this order recovers, or None (`clicks`: first click per record key)."""
    ordered_at = order_time(order)
    records = [e for e in entries if e.get("status") in ATTRIBUTED and record_time(e) <= ordered_at]
    token = order.get("cart_token")
    if token:
        same_cart = [e for e in records if e.get("cycle") == token]
        if same_cart:
            return max(same_cart, key=record_time)

    def clicked(entry: Mapping[str, Any]) -> bool:
        if entry.get("status") == "held":
            return True
        first = clicks.get(str(entry.get("key")))
        return first is not None and first <= ordered_at

    inside = [e for e in records if ordered_at - window <= record_time(e) and clicked(e)]
    return max(inside, key=record_time) if inside else None
