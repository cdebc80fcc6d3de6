"""Browsers (first-party browser IDs from the tracking script) and their product views.

`browsers`, `_id` = `storage.keys.browser_key`: shop_id, browser_id,
line_user_id (None until linked), linked_at, link_method, first_seen_at,
last_seen_at, first_utm, first_referrer, link_history [{line_user_id,
previous_line_user_id, method, at}], rate_minute, rate_count (the per-minute
event budget, kept here so every web process shares it).

`product_views`, `_id` = `storage.keys.view_key` (browser ID escaped): shop_id,
browser_id, product_id, line_user_id (None until linked; set on all of a
browser's views when it links), count, first_viewed_at, last_viewed_at.

`browser_secrets`, `_id` = `storage.keys.browser_key`: shop_id, secret_hash (SHA-256
of the secret only the browser's own script knows: the proof of possession a link
needs, `linking.link_token`), created_at. Apart from `browsers` so that claiming a
secret never creates a browser before its first event does.

A browser belongs to at most one LINE user per shop; it moves to another only
through a new successful link (`linking.links.link_browser`), which is recorded.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.errors import DuplicateKeyError

from storage.database import Database, Document, IndexSpec
from storage.keys import browser_key, view_key

INDEXES: list[IndexSpec] = (
    [
        IndexSpec("browsers", [("shop_id", ASCENDING), ("browser_id", ASCENDING)], "shop_browser", unique=True),
        IndexSpec("browsers", [("shop_id", ASCENDING), ("line_user_id", ASCENDING)], "shop_line_user"),
        IndexSpec("product_views", [("shop_id", ASCENDING), ("line_user_id", ASCENDING)], "shop_line_user"),
        IndexSpec("product_views", [("shop_id", ASCENDING), ("browser_id", ASCENDING)], "shop_browser"),
    ]
)

LINK_HISTORY_KEEP = 20




@dataclass(frozen=True)
class ViewCount:
    """New product views of one browser in one ingest batch."""

    product_id: str
    count: int
    first_at: datetime
    last_at: datetime


class BrowserRepository:
    def __init__(self, database: Database) -> None:
        self._browsers = database["browsers"]
        self._views = database["product_views"]
        self._secrets = database["browser_secrets"]

    async def get(self, shop_id: str, browser_id: str) -> Document | None:
        return await self._browsers.find_one({"_id": browser_key(shop_id, browser_id)})

    async def line_users(self, shop_id: str, browser_ids: Iterable[str]) -> dict[str, str | None]:
        """browser_id -> linked LINE user (None when unlinked), one round trip."""
        ids = [browser_key(shop_id, b) for b in browser_ids]
        found: dict[str, str | None] = {}
        async for doc in self._browsers.find({"_id": {"$in": ids}}, projection={"browser_id": 1, "line_user_id": 1}):
            found[doc["browser_id"]] = doc.get("line_user_id")
        return found

    async def take_budget(
        self, shop_id: str, browser_id: str, events: int, limit: int, now: datetime, first_seen: Mapping[str, Any]
    ) -> bool:
        """Spend `events` of the browser's per-minute budget, creating the browser if new.

        Atomic per document, so the budget holds across processes without a read:
        first try to add to this minute's count under the limit, then to open a new
        minute. Neither matching means the budget is spent.
        """
        minute = now.strftime("%Y%m%d%H%M")
        key = browser_key(shop_id, browser_id)
        if events > limit:
            return False
        insert = {
            "shop_id": shop_id,
            "browser_id": browser_id,
            "line_user_id": None,
            "linked_at": None,
            "link_method": None,
            "first_seen_at": now,
            "link_history": [],
            **first_seen,
        }
        for _ in range(2):  # a second round only when a concurrent request created the browser first
            result = await self._browsers.update_one(
                {"_id": key, "rate_minute": minute, "rate_count": {"$lte": limit - events}},
                {"$inc": {"rate_count": events}, "$max": {"last_seen_at": now}},
            )
            if result.matched_count:
                return True
            try:
                result = await self._browsers.update_one(
                    {"_id": key, "rate_minute": {"$ne": minute}},
                    {"$set": {"rate_minute": minute, "rate_count": events}, "$max": {"last_seen_at": now},
                     "$setOnInsert": insert},
                    upsert=True,
                )
            except DuplicateKeyError:  # exists with this minute open: over budget, or created just now
                continue
            return True
        return False

    async def add_views(self, shop_id: str, browser_id: str, views: list[ViewCount]) -> list[str]:
        """`$inc` the browser's view counters in one bulk write; returns the product IDs first seen now."""
        if not views:
            return []
        ops = [
            UpdateOne(
                {"_id": view_key(shop_id, browser_id, view.product_id)},
                {
                    "$inc": {"count": view.count},
                    "$min": {"first_viewed_at": view.first_at},
                    "$max": {"last_viewed_at": view.last_at},
                    "$setOnInsert": {
                        "shop_id": shop_id,
                        "browser_id": browser_id,
                        "product_id": view.product_id,
                        "line_user_id": None,
                    },
                },
                upsert=True,
            )
            for view in views
        ]
        result = await self._views.bulk_write(ops, ordered=False)
        return [views[index].product_id for index in result.upserted_ids or {}]

    async def claim_views(self, shop_id: str, browser_id: str, line_user_id: str) -> int:
        """Attribute every view of the browser to the LINE user (earlier views count once linked)."""
        result = await self._views.update_many(
            {"shop_id": shop_id, "browser_id": browser_id, "line_user_id": {"$ne": line_user_id}},
            {"$set": {"line_user_id": line_user_id}},
        )
        return result.modified_count

    async def set_link(
        self, shop_id: str, browser_id: str, line_user_id: str, method: str, previous: str | None, now: datetime
    ) -> bool:
        """Point the browser at the LINE user, only if it still points where we read it did.

        The precondition on the previous owner makes two concurrent links of one
        browser serialise: the loser sees no match and re-reads.
        """
        entry = {"line_user_id": line_user_id, "previous_line_user_id": previous, "method": method, "at": now}
        key = browser_key(shop_id, browser_id)
        update: dict[str, Any] = {
            "$set": {"line_user_id": line_user_id, "linked_at": now, "link_method": method},
            "$max": {"last_seen_at": now},
            "$push": {"link_history": {"$each": [entry], "$slice": -LINK_HISTORY_KEEP}},
        }
        try:
            result = await self._browsers.update_one(
                {"_id": key, "line_user_id": previous},
                {**update, "$setOnInsert": {"shop_id": shop_id, "browser_id": browser_id, "first_seen_at": now}},
                upsert=previous is None,
            )
        except DuplicateKeyError:  # created or linked concurrently
            return False
        return bool(result.matched_count or result.upserted_id is not None)

    async def claim_secret(self, shop_id: str, browser_id: str, secret_hash: str, now: datetime) -> bool:
        """True when `secret_hash` is the browser's secret: kept now if it had none (first use), else compared.

        One insert: of two concurrent first claims exactly one wins the unique `_id`, the
        other compares against the winner's.
        """
        key = browser_key(shop_id, browser_id)
        try:
            await self._secrets.insert_one({"_id": key, "shop_id": shop_id, "secret_hash": secret_hash,
                                            "created_at": now})
            return True
        except DuplicateKeyError:
            pass
        doc = await self._secrets.find_one({"_id": key})
        return doc is not None and hmac.compare_digest(str(doc.get("secret_hash") or ""), secret_hash)

    async def count_linked(self, shop_id: str) -> int:
        """Browsers linked to some LINE user ("ブラウザ紐づき数"); `$gt: ""` keeps the index bounds tight."""
        return await self._browsers.count_documents({"shop_id": shop_id, "line_user_id": {"$gt": ""}})

