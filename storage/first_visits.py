"""A linked customer's first visit to the shop's site, from their browsers: when, and with which UTM parameters.

The earliest `first_seen_at` of the customer's browsers, with that browser's
landing UTM parameters and referrer (`storage.browsers`), read with one indexed
query (`shop_line_user`). Step sequences copy it into a run when the customer
enters (and refresh running runs when a browser is linked), so the delivery
engine never joins another collection for it.
"""

from __future__ import annotations

from typing import Any

from storage.database import Database, Document


async def first_visit(database: Database, shop_id: str, line_user_id: str) -> dict[str, Any] | None:
    """{"at", "utm", "referrer"} of the customer's earliest browser; None when no browser is linked to them."""
    earliest: Document | None = None
    async for browser in database["browsers"].find(
            {"shop_id": shop_id, "line_user_id": line_user_id},
            {"first_seen_at": 1, "first_utm": 1, "first_referrer": 1}):
        seen = browser.get("first_seen_at")
        if seen is not None and (earliest is None or seen < earliest["first_seen_at"]):
            earliest = browser
    if earliest is None:
        return None
    return {"at": earliest["first_seen_at"], "utm": earliest.get("first_utm") or None,
            "referrer": earliest.get("first_referrer")}
