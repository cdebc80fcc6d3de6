"""`first_visits`: each linked customer's first visit to the shop's site, kept where the delivery engine joins it.

`_id` = "<shop_id>:<line_user_id>" (the customer's key, so the engine reads it
with the contact in one `$lookup`): shop_id, line_user_id, at (the earliest
`first_seen_at` of the customer's browsers), utm (that browser's landing UTM
parameters, or None), referrer, updated_at.

Recomputed from the customer's browsers (one indexed read) whenever a browser
is linked and when a step sequence needs it, so it is right however often it
runs and whichever browser was linked first.
"""

from __future__ import annotations

from datetime import datetime

from storage.customers import customer_key
from storage.database import Database, Document

FIRST_VISITS = "first_visits"


class FirstVisits:
    def __init__(self, database: Database) -> None:
        self._visits = database[FIRST_VISITS]
        self._browsers = database["browsers"]

    async def get(self, shop_id: str, line_user_id: str) -> Document | None:
        return await self._visits.find_one({"_id": customer_key(shop_id, line_user_id)})

    async def refresh(self, shop_id: str, line_user_id: str, now: datetime) -> Document | None:
        """Recompute from the customer's browsers (index `shop_line_user`); None (and nothing kept) when
        they have none."""
        earliest: Document | None = None
        async for browser in self._browsers.find(
                {"shop_id": shop_id, "line_user_id": line_user_id},
                {"first_seen_at": 1, "first_utm": 1, "first_referrer": 1}).hint("shop_line_user"):
            seen = browser.get("first_seen_at")
            if seen is not None and (earliest is None or seen < earliest["first_seen_at"]):
                earliest = browser
        if earliest is None:  # e.g. their only browser moved to someone else
            await self._visits.delete_one({"_id": customer_key(shop_id, line_user_id)})
            return None
        doc: Document = {"shop_id": shop_id, "line_user_id": line_user_id, "at": earliest["first_seen_at"],
                         "utm": earliest.get("first_utm") or None, "referrer": earliest.get("first_referrer"),
                         "updated_at": now}
        await self._visits.update_one({"_id": customer_key(shop_id, line_user_id)}, {"$set": doc}, upsert=True)
        return {"_id": customer_key(shop_id, line_user_id), **doc}
