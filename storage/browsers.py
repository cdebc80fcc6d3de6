"""Browsers (first-party browser IDs from the tracking script) and their product views.

`browsers`, `_id` = `storage.keys.browser_key`: shop_id, browser_id,
line_user_id (None until linked), linked_at, link_method, first_seen_at,
last_seen_at (the first event of the last minute it sent any: written once a
minute at most), first_utm, first_referrer, link_history [{line_user_id,
previous_line_user_id, method, at}]. (Documents written before the budgets
moved to storage.rate_budgets still carry rate_minute/rate_count, unread.)

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne, WriteConcern
from pymongo.asynchronous.client_session import AsyncClientSession
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
UNJOURNALED = WriteConcern(w=1, j=False)  # `record_seen` only
ID_CHUNK = 25  # `$in` on _id grows superlinearly on the embedded database
# Upserts per statement: the embedded database applies a statement whole before any other client's write
# (about a millisecond per document), so a long one would hold up the acknowledgements queued behind it.
WRITE_CHUNK = 25


@dataclass(frozen=True)
class ViewCount:
    """New product views of one browser in one ingest batch."""

    product_id: str
    count: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class BrowserViews:
    """New product views of one browser, and who its views belong to when the view rows are created."""

    shop_id: str
    browser_id: str
    views: list[ViewCount]
    line_user_id: str | None = None


@dataclass(frozen=True)
class Seen:
    """A browser that sent events now, with what it remembers of its landing if it is new."""

    shop_id: str
    browser_id: str
    first_seen: Mapping[str, Any]


class BrowserRepository:
    def __init__(self, database: Database) -> None:
        self._browsers = database["browsers"]
        self._views = database["product_views"]
        self._secrets = database["browser_secrets"]

    async def get(self, shop_id: str, browser_id: str) -> Document | None:
        return await self._browsers.find_one({"_id": browser_key(shop_id, browser_id)})

    async def line_users(self, shop_id: str, browser_ids: Iterable[str]) -> dict[str, str | None]:
        """browser_id -> linked LINE user (None when unlinked), one round trip per 25 browsers."""
        ids = [browser_key(shop_id, b) for b in sorted(set(browser_ids))]
        found: dict[str, str | None] = {}
        for start in range(0, len(ids), ID_CHUNK):
            async for doc in self._browsers.find({"_id": {"$in": ids[start:start + ID_CHUNK]}},
                                                 projection={"browser_id": 1, "line_user_id": 1}):
                found[doc["browser_id"]] = doc.get("line_user_id")
        return found

    async def record_seen(self, seen: Sequence[Seen], now: datetime) -> None:
        """Create browsers seen for the first time and move `last_seen_at` (bulk writes of `WRITE_CHUNK`)."""
        if not seen:
            return
        ops = [
            UpdateOne(
                {"_id": browser_key(entry.shop_id, entry.browser_id)},
                {
                    "$max": {"last_seen_at": now},
                    "$setOnInsert": {
                        "shop_id": entry.shop_id, "browser_id": entry.browser_id, "line_user_id": None,
                        "linked_at": None, "link_method": None, "link_history": [], "first_seen_at": now,
                        **entry.first_seen,
                    },
                },
                upsert=True,
            )
            for entry in seen
        ]
        # Not waiting for the journal: it acknowledges nothing, and the next journaled write syncs the log up to
        # and including it (lost with an unsynced end of the log, it is written again with its events).
        unjournaled = self._browsers.with_options(write_concern=UNJOURNALED)
        for start in range(0, len(ops), WRITE_CHUNK):
            await unjournaled.bulk_write(ops[start:start + WRITE_CHUNK], ordered=False)

    async def add_views_many(self, entries: Sequence[BrowserViews],
                             session: AsyncClientSession | None = None) -> list[tuple[str, str]]:
        """`$inc` the view counters of many browsers (bulk writes of `WRITE_CHUNK`); returns (browser, product)
        first seen now.

        A new view row starts attributed to the browser's LINE user as the caller read it.
        """
        ops: list[UpdateOne] = []
        keys: list[tuple[str, str]] = []
        for entry in entries:
            for view in entry.views:
                ops.append(UpdateOne(
                    {"_id": view_key(entry.shop_id, entry.browser_id, view.product_id)},
                    {
                        "$inc": {"count": view.count},
                        "$min": {"first_viewed_at": view.first_at},
                        "$max": {"last_viewed_at": view.last_at},
                        "$setOnInsert": {"shop_id": entry.shop_id, "browser_id": entry.browser_id,
                                         "product_id": view.product_id, "line_user_id": entry.line_user_id},
                    },
                    upsert=True,
                ))
                keys.append((entry.browser_id, view.product_id))
        if not ops:
            return []
        first: list[tuple[str, str]] = []
        for start in range(0, len(ops), WRITE_CHUNK):
            result = await self._views.bulk_write(ops[start:start + WRITE_CHUNK], ordered=False, session=session)
            first += [keys[start + index] for index in result.upserted_ids or {}]
        return first

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

