"""Per-minute event budgets kept in MongoDB, so every web process shares them; many taken in one bulk write.

A budget is one small document per key and minute in `tracking_budgets`
(`_id` = "<key>|<minute>", `count`, `expires_at` for the TTL purge). Taking
`n` of a budget of `limit` is one conditional upsert: it matches only while
`count <= limit - n`. When the budget is spent the filter does not match, the
upsert tries to insert a second document with the same `_id` and fails with
a duplicate-key error - which a bulk write reports per operation, so one round
trip answers for every key. A duplicate can also mean that another process
created the document a moment earlier: those operations are tried once more.

A refused take changes nothing. The result also says which takes opened
their key's minute (the document was created now): the tracking endpoint
updates a browser's own document only then, once a minute at most.

The documents are small and their collection has one index (the TTL): on
the embedded database every index costs every write, and a budget is written
with every request. Budget writes do not wait for the journal (`w: 1`): they
acknowledge nothing, and a crash of the database that loses the last ones only
lets a few more events in within that minute; a journaled write per request
group would cost a disk sync in front of every acknowledgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo import ASCENDING, UpdateOne, WriteConcern
from pymongo.errors import BulkWriteError

from storage.bulk import only_duplicates
from storage.database import Database
from storage.types import IndexSpec

COLLECTION = "tracking_budgets"
UNJOURNALED = WriteConcern(w=1, j=False)  # see the module docstring
KEEP_FOR = timedelta(minutes=2)
INDEXES: list[IndexSpec] = [IndexSpec(COLLECTION, [("expires_at", ASCENDING)], "budget_ttl", expire_after_seconds=0)]


@dataclass(frozen=True)
class Take:
    key: str  # e.g. "b|<shop_id>|<browser_id>" or "s|<shop_id>"
    events: int
    limit: int  # events per minute


@dataclass(frozen=True)
class Taken:
    granted: bool
    opened: bool = False  # the first take of this key in this minute


def minute_of(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def _operation(take: Take, minute: datetime) -> UpdateOne:
    return UpdateOne(
        {"_id": f"{take.key}|{minute:%Y%m%d%H%M}", "count": {"$lte": take.limit - take.events}},
        {"$inc": {"count": take.events}, "$setOnInsert": {"expires_at": minute + KEEP_FOR}},
        upsert=True,
    )


async def _write(database: Database, operations: Sequence[UpdateOne]) -> tuple[set[int], set[int]]:
    """(refused, opened) positions of one unordered bulk write."""
    try:
        result = await database[COLLECTION].with_options(write_concern=UNJOURNALED).bulk_write(
            list(operations), ordered=False)
    except BulkWriteError as exc:
        if not only_duplicates(exc):
            raise
        errors = exc.details.get("writeErrors", [])
        return ({int(error["index"]) for error in errors},
                {int(entry["index"]) for entry in exc.details.get("upserted", [])})
    return set(), {int(index) for index in (result.upserted_ids or {})}


async def take_all(database: Database, takes: Sequence[Take], now: datetime) -> list[Taken]:
    """Take every budget (one bulk write, a second only for refusals); per take: granted? opened its minute?"""
    minute = minute_of(now)
    results = [Taken(False) for _ in takes]
    pending = [index for index, take in enumerate(takes) if 0 < take.events <= take.limit]
    for attempt in range(2):
        if not pending:
            break
        refused, opened = await _write(database, [_operation(takes[index], minute) for index in pending])
        for position, index in enumerate(pending):
            if position not in refused:
                results[index] = Taken(True, position in opened)
        pending = [] if attempt else [pending[position] for position in sorted(refused)]
    return results
