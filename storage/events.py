"""Browser events as received from the tracking script, unique by the client's event ID.

`events`, `_id` = "<shop_id>:<event_id>": shop_id, event_id, browser_id, type
(page_view | add_to_cart | checkout_started | purchase), url, product_id,
referrer, utm {source, medium, campaign, term, content}, cart_token, order_id,
quantity, value, received_at (stamped by the server, never the client's clock).

A retried beacon carries the same event ID, so it is stored once and counted once.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING

from storage.bulk import insert_new
from storage.database import Database, Document, IndexSpec
from storage.keys import shop_scoped

INDEXES: list[IndexSpec] = [
    IndexSpec("events", [("shop_id", ASCENDING), ("event_id", ASCENDING)], "shop_event", unique=True),
]


def event_key(shop_id: str, event_id: str) -> str:
    return shop_scoped(shop_id, event_id)


class EventRepository:
    def __init__(self, database: Database) -> None:
        self._events = database["events"]

    async def insert_new(self, docs: Sequence[Document]) -> set[str]:
        """Insert what is new in one round trip; returns the event IDs stored now (duplicates skipped)."""
        stored = await insert_new(self._events, docs)
        return {doc["event_id"] for index, doc in enumerate(docs) if index in stored}
