"""`carts`: one document per cart of a shop (its cart token), fed by the tracking script and the shop platform.

Document (`_id` = `keys.shop_scoped(shop_id, cart_token)`):
  shop_id, cart_token,
  items: [{product_id, variant_id?, quantity, price? (unit, yen), ref_price? (the catalogue's, when the line
  came without one), title?, image_url?}] in cart order,
  stage: "cart" | "checkout", state: "open" | "ordered" | "emptied",
  value: yen (lines without a price valued at the catalogue price when they arrived),
  line_user_id (the owner; None until known), browser_id, customer_id (the shop's own),
  last_activity_at, abandoned_at (last activity + the shop's delay; kept once passed, None when the cart
  ended before it), platform_updated_at (the platform's own time of its last write, against reordering),
  order_id, ordered_at, event_ids (the latest browser events applied: replays change nothing),
  created_at, updated_at, version.

What a change does to a cart is decided by pure functions (`flows.carts.cart`); this module only reads and
writes, each write conditional on the `version` it was computed from (`change`), so concurrent events on one
cart serialise instead of losing a line. Every read's filter uses only the fields of one of the indexes below, so
the embedded database plans it on that index (never hinted: it answers a hinted read by walking the whole
index). Never decides who gets a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from storage.database import Database, Document, IndexSpec
from storage.keys import shop_scoped

CARTS = "carts"
# Customer search by cart state: carts of a state by activity (value and owner are checked after the index).
SEARCH_INDEX = [("shop_id", ASCENDING), ("state", ASCENDING), ("last_activity_at", ASCENDING), ("_id", ASCENDING)]
SEARCH_FIRST_WINDOW = timedelta(days=1)
SEARCH_FLOOR = timedelta(days=400)  # without `active_from`, the search looks this far back
SEARCH = "shop_state_activity"
BY_ID = "_id_"
INDEXES: list[IndexSpec] = [
    IndexSpec(CARTS, [("shop_id", ASCENDING), ("browser_id", ASCENDING)], "shop_browser"),
    IndexSpec(CARTS, [("shop_id", ASCENDING), ("abandoned_at", ASCENDING)], "shop_abandoned"),
    IndexSpec(CARTS, SEARCH_INDEX, SEARCH),
]
MAX_ATTEMPTS = 10

CartState = Literal["open", "ordered", "emptied"]
Outcome = Literal["created", "updated", "unchanged"]
# The current cart (None: never seen) → its new content fields, or None when nothing changes.
Change = Callable[[Document | None], Document | None]


def cart_key(shop_id: str, cart_token: str) -> str:
    return shop_scoped(shop_id, cart_token)


class CartContention(Exception):
    """A cart kept changing under us (a storm of writes to one cart)."""


@dataclass(frozen=True)
class Changed:
    cart: Document | None  # the cart as stored now (None: still unknown)
    outcome: Outcome


@dataclass(frozen=True)
class CartSearch:
    """Customer search by cart state (the seed's カゴ落ち状態 / 日時 / 金額 columns)."""

    state: CartState = "open"
    min_value: int | None = None
    max_value: int | None = None
    active_from: datetime | None = None
    active_to: datetime | None = None
    linked: bool | None = None  # True: carts whose owner is known (customers); False: anonymous browsers


class CartRepository:
    def __init__(self, database: Database) -> None:
        self._carts = database[CARTS]

    async def get(self, shop_id: str, cart_token: str) -> Document | None:
        return await self._carts.find_one({"_id": cart_key(shop_id, cart_token)})

    async def change(self, shop_id: str, cart_token: str, change: Change, now: datetime) -> Changed:
        """Read, apply `change` (pure), write back only if nobody wrote in between (else read again)."""
        key = cart_key(shop_id, cart_token)
        for _ in range(MAX_ATTEMPTS):
            current = await self._carts.find_one({"_id": key})
            fields = change(current)
            if fields is None:
                return Changed(current, "unchanged")
            if current is None:
                doc = {**fields, "_id": key, "shop_id": shop_id, "cart_token": cart_token, "created_at": now,
                       "updated_at": now, "version": 1}
                try:
                    await self._carts.insert_one(doc)
                except DuplicateKeyError:
                    continue
                return Changed(doc, "created")
            version = int(current.get("version") or 0)
            doc = {**current, **fields, "updated_at": now, "version": version + 1}
            # A write by `_id` plus a condition names the `_id` index (the planner would not pick it for two fields).
            result = await self._carts.replace_one({"_id": key, "version": current.get("version")}, doc, hint=BY_ID)
            if result.matched_count == 1:
                return Changed(doc, "updated")
        raise CartContention(f"cart of shop {shop_id} kept changing")

    async def by_browser(self, shop_id: str, browser_id: str) -> list[Document]:
        """Every cart a browser touched (the link-time attach; a browser has few)."""
        return [doc async for doc in self._carts.find({"shop_id": shop_id, "browser_id": browser_id})]

    async def search(self, shop_id: str, search: CartSearch, after: tuple[datetime, str] | None, limit: int,
                     now: datetime) -> list[Document]:
        """Carts in a state, newest activity first, filtered by value, activity and owner.

        The embedded database reads every document a query's range matches, even for a `limit`, so the page
        is found by walking back through activity in widening windows (1, 4, 16… days) until it is full or
        the floor (`active_from`, else `SEARCH_FLOOR` back) is reached: a page of recent carts reads about
        as many carts as it shows. Each window is one aggregate whose first `$match` is exactly the search
        index's fields; value and owner are checked in a second stage. `after` is the previous page's last
        (last_activity_at, _id): keyset paging, stable while carts change.
        """
        rest: dict[str, Any] = {}
        value: dict[str, Any] = {}
        if search.min_value is not None:
            value["$gte"] = search.min_value
        if search.max_value is not None:
            value["$lte"] = search.max_value
        if value:
            rest["value"] = value
        if search.linked is True:
            rest["line_user_id"] = {"$gt": ""}
        elif search.linked is False:
            rest["line_user_id"] = None
        driver = {"shop_id": shop_id, "state": search.state}
        page: list[Document] = []
        high = now + timedelta(minutes=1)  # activity is stamped by the server: never later than now
        if search.active_to is not None:
            high = min(high, search.active_to)
        if after is not None:
            at, key = after
            page = await self._window({**driver, "last_activity_at": at, "_id": {"$lt": key}}, rest, limit)
            high = min(high, at)
        floor = search.active_from if search.active_from is not None else now - SEARCH_FLOOR
        span = SEARCH_FIRST_WINDOW
        while len(page) < limit and high > floor:
            low = max(floor, high - span)
            page += await self._window({**driver, "last_activity_at": {"$gte": low, "$lt": high}}, rest,
                                       limit - len(page))
            high, span = low, span * 4
        return page

    async def _window(self, driver: dict[str, Any], rest: dict[str, Any], limit: int) -> list[Document]:
        pipeline: list[dict[str, Any]] = [{"$match": driver}]
        if rest:
            pipeline.append({"$match": rest})
        pipeline += [{"$sort": {"last_activity_at": -1, "_id": -1}}, {"$limit": limit}]
        return [doc async for doc in await self._carts.aggregate(pipeline)]

    async def count_abandoned(self, shop_id: str, start: datetime, end: datetime) -> tuple[int, int]:
        """(carts abandoned in [start, end), of which with a known owner): one aggregate on the abandonment index."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"shop_id": shop_id, "abandoned_at": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": None, "total": {"$sum": 1},
                        "linked": {"$sum": {"$cond": [{"$gt": ["$line_user_id", ""]}, 1, 0]}}}}]
        found = [doc async for doc in await self._carts.aggregate(pipeline)]
        return (int(found[0]["total"]), int(found[0]["linked"])) if found else (0, 0)
