"""Segments: saved filters over customers (tags, rank, purchases, spend, points, linked), and their audiences.

Document (`segments`, `_id` = `keys.shop_scoped(shop_id, segment_id)`): shop_id, segment_id, name, filter (as PUT, unset
fields left out), rich_menu (the segment's own rich menu settings, or None), deleted (a deleted segment's
menu is unlinked by the worker before the document goes), menu ({rich_menu_id, hash, generation, members,
deployed_at} once deployed), created_at, updated_at, and the leased fields of its menu refresh (next_due_at,
claim, prev_claim; `storage.leases`), with `v` bumped by every change so a refresh notices one made meanwhile.
`segment_members` (`_id` = `keys.compose(segment key, generation, seq)`): who may be linked to the segment's menu, in
chunks of 500 sorted LINE user IDs per generation (`skey`, `gen`, `seq`, `users`).

An audience is evaluated by one aggregate: a *driver* `$match` that fits one index of `customers` exactly
(SecantusDB plans only filters whose fields an index covers, and answers a hinted query by walking the
whole index, so the driver is never hinted and never carries other fields), then a second `$match` with
the rest of the filter and the reachability rule — friend, not blocked, not opted out — which every
audience has, whatever the filter says. The driver is the most selective condition the indexes can
serve: an exact tag, a tag prefix, any of some tags, ranks, `linked`, and otherwise friends. Spend,
purchase count, last purchase and points are checked in the second stage only (an index each on
`customers` would tax every order and webhook write for a filter a merchant edits now and then).

A tag pattern ending in `*` matches by prefix (`subscription-123-*`): an index range on the driver, an
anchored regular expression in the second stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator
from pymongo import ASCENDING

from storage import keys
from storage.customers import MESSAGEABLE
from storage.database import Database, Document, IndexSpec
from storage.leases import DUE_INDEX, NEVER, LeasedCollection

SEGMENTS = "segments"
MEMBERS = "segment_members"
MENU_DUE = "segment_menu_due"
INDEXES: list[IndexSpec] = [
    IndexSpec(SEGMENTS, [("shop_id", ASCENDING), ("segment_id", ASCENDING)], "shop_segment"),
    IndexSpec(SEGMENTS, DUE_INDEX, MENU_DUE),
    IndexSpec(MEMBERS, [("skey", ASCENDING), ("gen", ASCENDING), ("seq", ASCENDING)], "segment_gen"),
]
MEMBER_CHUNK = 500
PREFIX = "*"
PREFIX_END = "\U0010ffff"  # sorts after every character a tag can hold
# Every audience is restricted to customers we may message (`storage.customers.MESSAGEABLE`, the policy's rule).
REACHABLE: dict[str, object] = {field_name: needed for field_name, needed, _ in MESSAGEABLE}

TagPattern = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f*]+\*?$")]
TagPatterns = Annotated[list[TagPattern], Field(max_length=50)]
Rank = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Range(BaseModel):
    """Inclusive bounds; either may be left out."""

    model_config = ConfigDict(extra="forbid")
    min: Annotated[int, Field(strict=True, ge=0, le=10**12)] | None = None
    max: Annotated[int, Field(strict=True, ge=0, le=10**12)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self

    def query(self) -> dict[str, int]:
        bounds = {"$gte": self.min, "$lte": self.max}
        return {op: value for op, value in bounds.items() if value is not None}


class SegmentFilter(BaseModel):
    """Who is in a segment: every given condition must hold (and the customer must be reachable)."""

    model_config = ConfigDict(extra="forbid")
    tags_all: TagPatterns = Field(default_factory=list, description="has every one of these tags")
    tags_any: TagPatterns = Field(default_factory=list, description="has at least one of these tags")
    tags_none: TagPatterns = Field(default_factory=list, description="has none of these tags")
    ranks: Annotated[list[Rank], Field(max_length=50)] = Field(default_factory=list, description="member rank is one of these")
    purchase_count: Range | None = None
    total_spent: Range | None = Field(default=None, description="yen")
    last_purchase_within_days: Annotated[int, Field(strict=True, ge=1, le=3650)] | None = None
    points_balance: Range | None = None
    linked: StrictBool | None = Field(default=None, description="has (true) or has no (false) linked browser")

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)


def _prefix(pattern: str) -> str | None:
    return pattern[:-1] if pattern.endswith(PREFIX) else None


def _tag_range(prefix: str) -> dict[str, str]:
    return {"$gte": prefix, "$lt": prefix + PREFIX_END}


def _tag_regex(prefix: str) -> dict[str, str]:
    return {"$regex": "^" + re.escape(prefix)}


@dataclass(frozen=True)
class AudienceQuery:
    """A segment's audience as two `$match` stages: `driver` rides `index` exactly, `rest` checks the others."""

    driver: dict[str, Any]
    index: str
    rest: dict[str, Any]

    def pipeline(self, *stages: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"$match": self.driver}, {"$match": self.rest}, *stages]


def _driver(shop_id: str, spec: SegmentFilter) -> tuple[dict[str, Any], str]:
    exact_all = [t for t in spec.tags_all if _prefix(t) is None]
    if exact_all:
        return {"shop_id": shop_id, "tags": exact_all[0]}, "shop_tag_user"
    if spec.tags_all:
        return {"shop_id": shop_id, "tags": _tag_range(str(_prefix(spec.tags_all[0])))}, "shop_tag_user"
    if spec.tags_any and all(_prefix(t) is None for t in spec.tags_any):
        return {"shop_id": shop_id, "tags": {"$in": list(dict.fromkeys(spec.tags_any))}}, "shop_tag_user"
    if len(spec.tags_any) == 1:
        return {"shop_id": shop_id, "tags": _tag_range(str(_prefix(spec.tags_any[0])))}, "shop_tag_user"
    if spec.ranks:
        return {"shop_id": shop_id, "rank": {"$in": list(dict.fromkeys(spec.ranks))}}, "shop_rank_user"
    if spec.linked is not None:
        return {"shop_id": shop_id, "linked": spec.linked, **REACHABLE}, "shop_linked_reachable"
    return {"shop_id": shop_id, "friend": True}, "shop_friend_user"


def _tag_clauses(patterns: Sequence[str]) -> list[dict[str, Any]]:
    return [{"tags": pattern} if _prefix(pattern) is None else {"tags": _tag_regex(str(_prefix(pattern)))}
            for pattern in patterns]


def audience_query(shop_id: str, spec: SegmentFilter, now: datetime) -> AudienceQuery:
    """The segment's audience at `now` (reachable customers only)."""
    driver, index = _driver(shop_id, spec)
    clauses: list[dict[str, Any]] = [dict(REACHABLE)]
    clauses += _tag_clauses(spec.tags_all)
    if spec.tags_any:
        clauses.append({"$or": _tag_clauses(spec.tags_any)})
    clauses += [{"$nor": [clause]} for clause in _tag_clauses(spec.tags_none)]
    if spec.ranks:
        clauses.append({"rank": {"$in": spec.ranks}})
    if spec.purchase_count is not None:
        clauses.append({"totals.purchase_count": spec.purchase_count.query()})
    if spec.total_spent is not None:
        clauses.append({"totals.total_spend": spec.total_spent.query()})
    if spec.last_purchase_within_days is not None:
        clauses.append({"totals.last_purchase_at": {"$gte": now - timedelta(days=spec.last_purchase_within_days)}})
    if spec.points_balance is not None:
        balance = {"points.balance": spec.points_balance.query()}
        # A customer without a points ledger has a balance of 0.
        clauses.append({"$or": [balance, {"points.balance": {"$exists": False}}]}
                       if (spec.points_balance.min or 0) == 0 else balance)
    if spec.linked is not None:
        clauses.append({"linked": True} if spec.linked else {"linked": {"$ne": True}})
    return AudienceQuery(driver, index, {"$and": clauses})


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[str]


async def preview(database: Database, query: AudienceQuery, sample: int = 10) -> Preview:
    """The audience's size and its first members in the driver's order: one round trip, nothing streamed."""
    facets: dict[str, Any] = {"count": [{"$count": "n"}]}
    if sample > 0:
        facets["sample"] = [{"$limit": sample}, {"$project": {"_id": 0, "line_user_id": 1}}]
    pipeline = query.pipeline({"$facet": facets})
    result = [doc async for doc in await database["customers"].aggregate(pipeline)]
    facets = result[0] if result else {}
    count = (facets.get("count") or [{}])[0].get("n", 0)
    return Preview(int(count), [str(doc["line_user_id"]) for doc in facets.get("sample") or []])


async def members(database: Database, query: AudienceQuery, batch_size: int = 5000) -> list[str]:
    """Every member's LINE user ID, sorted (one cursor; the IDs alone come back)."""
    pipeline = query.pipeline({"$project": {"_id": 0, "line_user_id": 1}})
    cursor = await database["customers"].aggregate(pipeline, batchSize=batch_size)
    return sorted({str(doc["line_user_id"]) async for doc in cursor})


def segment_key(shop_id: str, segment_id: str) -> str:
    return keys.shop_scoped(shop_id, segment_id)


class SegmentRepository:
    def __init__(self, database: Database) -> None:
        self._segments = database[SEGMENTS]
        self._members = database[MEMBERS]
        self.menus = LeasedCollection(self._segments, MENU_DUE)

    async def put(self, shop_id: str, segment_id: str, fields: dict[str, Any], now: datetime) -> tuple[Document, bool]:
        """Create or replace the segment's definition (its deployed menu state is kept); True when created."""
        result = await self._segments.update_one(
            {"_id": segment_key(shop_id, segment_id)},
            {"$set": {**fields, "updated_at": now},
             "$setOnInsert": {"shop_id": shop_id, "segment_id": segment_id, "created_at": now}},
            upsert=True)
        doc = await self.get(shop_id, segment_id)
        assert doc is not None
        return doc, result.upserted_id is not None

    async def get(self, shop_id: str, segment_id: str) -> Document | None:
        return await self._segments.find_one({"_id": segment_key(shop_id, segment_id)})

    async def delete(self, shop_id: str, segment_id: str) -> Document | None:
        return await self._segments.find_one_and_delete({"_id": segment_key(shop_id, segment_id)})

    async def page(self, shop_id: str, after: str | None, limit: int) -> list[Document]:
        query: dict[str, Any] = {"shop_id": shop_id}
        if after is not None:
            query["segment_id"] = {"$gt": after}
        cursor = self._segments.find(query).sort("segment_id", ASCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def request_refresh(self, shop_id: str, segment_id: str, now: datetime) -> None:
        """The segment changed (or a refresh was asked for): its menu is refreshed at the next tick — unless a
        worker holds it right now, which then notices the change (`v`) and leaves it due."""
        due = {"$ifNull": ["$next_due_at", NEVER]}
        await self._segments.update_one({"_id": segment_key(shop_id, segment_id)}, [{"$set": {
            "v": {"$add": [{"$ifNull": ["$v", 0]}, 1]},
            "next_due_at": {"$cond": [{"$eq": [{"$ifNull": ["$claim", None]}, None]},
                                      {"$min": [due, {"$literal": now}]}, due]},
        }}])

    async def remove(self, key: str) -> None:
        """The segment's document and its member chunks (after its menu was unlinked)."""
        await self._members.delete_many({"skey": key})
        await self._segments.delete_one({"_id": key})

    # --- who is linked to the segment's menu, one generation at a time ---

    async def members_of(self, key: str, generation: int | None) -> list[str]:
        if generation is None:
            return []
        cursor = self._members.find({"skey": key, "gen": generation}).sort("seq", ASCENDING)
        return [user async for chunk in cursor for user in chunk.get("users") or []]

    async def store_members(self, key: str, generation: int, users: Sequence[str]) -> None:
        """Write a generation (its chunks replace any left by a crashed refresh of the same number)."""
        await self._members.delete_many({"skey": key, "gen": generation})
        ordered = sorted(users)
        docs = [{"_id": keys.compose(key, f"{generation:06d}", f"{seq:06d}"), "skey": key, "gen": generation, "seq": seq,
                 "users": ordered[start:start + MEMBER_CHUNK]}
                for seq, start in enumerate(range(0, len(ordered), MEMBER_CHUNK))]
        if docs:
            await self._members.insert_many(docs, ordered=False)

    async def drop_generation(self, key: str, generation: int) -> None:
        await self._members.delete_many({"skey": key, "gen": generation})
