"""Per-minute event budgets kept in MongoDB, so every web process shares them; many taken in one bulk write.

A budget lives on a document as `rate_mark` = minute number × 10^7 + events
counted in that minute. Taking `n` of a budget of `limit` is one conditional
upsert: it matches only while `rate_mark <= this minute's base + limit - n`
(a mark from an earlier minute is always below that, and a document without
one matches too), and a pipeline update starts the minute over or adds `n`.
When the budget is spent the filter does not match, the upsert tries to
insert a second document with the same `_id` and fails with a duplicate-key
error - which a bulk write reports per operation, so one round trip answers
for every key. A duplicate can also mean that another process created the
document a moment earlier: those operations are tried once more.

A refused take changes nothing. `fields` lets the caller set more fields in
the same write (e.g. a browser's first-seen data: `insert_only` keeps them to
the document's creation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from storage.database import Database
from storage.types import Document

MARK_SCALE = 10_000_000  # events per minute a budget can count
SHOP_BUDGETS = "tracking_budgets"  # `_id` = shop_id: a shop's budget of browser events
DUPLICATE_KEY = 11000
CREATED_FIELD = "first_seen_at"  # `insert_only` fields are set while this one is missing


@dataclass(frozen=True)
class Take:
    key: str  # the document's _id
    events: int
    limit: int  # events per minute
    fields: Mapping[str, Any] = field(default_factory=dict)  # aggregation expressions, set in the same write


def minute_base(now: datetime) -> int:
    return int(now.timestamp() // 60) * MARK_SCALE


def insert_only(values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Pipeline `$set` expressions that give these values to a new document and keep an existing one's.

    The document is new while it has no `first_seen_at`; that field is set to `now` then.
    """
    new = {"$eq": [{"$type": f"${CREATED_FIELD}"}, "missing"]}
    fields: dict[str, Any] = {name: {"$cond": [new, {"$literal": value}, f"${name}"]} for name, value in values.items()}
    fields[CREATED_FIELD] = {"$ifNull": [f"${CREATED_FIELD}", {"$literal": now}]}
    return fields


def _operation(take: Take, base: int) -> UpdateOne:
    mark = {"$ifNull": ["$rate_mark", 0]}
    return UpdateOne(
        {"_id": take.key, "rate_mark": {"$not": {"$gt": base + take.limit - take.events}}},
        [{"$set": {"rate_mark": {"$cond": [{"$lt": [mark, base]}, base + take.events, {"$add": [mark, take.events]}]},
                   **take.fields}}],
        upsert=True,
    )


async def _refused(collection: AsyncCollection[Document], operations: Sequence[UpdateOne]) -> set[int]:
    try:
        await collection.bulk_write(list(operations), ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        return {int(error["index"]) for error in errors}
    return set()


async def take_all(collection: AsyncCollection[Document], takes: Sequence[Take], now: datetime) -> list[bool]:
    """Take every budget (one bulk write, a second only for refusals); per take: was it granted?"""
    base = minute_base(now)
    granted = [0 < take.events <= take.limit for take in takes]
    pending = [index for index, ok in enumerate(granted) if ok]
    for attempt in range(2):
        if not pending:
            break
        refused = await _refused(collection, [_operation(takes[index], base) for index in pending])
        if attempt == 1:
            for position in refused:
                granted[pending[position]] = False
        pending = [pending[position] for position in sorted(refused)]
    return granted


async def take_shop_budgets(database: Database, takes: Sequence[tuple[str, int, int]], now: datetime) -> list[bool]:
    """(shop_id, events, limit per minute) -> granted?, for the shops' budgets of browser events."""
    return await take_all(database[SHOP_BUDGETS], [Take(shop_id, events, limit) for shop_id, events, limit in takes],
                          now)
