"""A leased collection: documents that fall due, taken by workers in leased batches, settled conditionally.

The one claim/lease/settle mechanism of the delivery machinery, shared by the
per-customer `contacts` (`storage.contacts`) and the broadcast batches
(`storage.broadcasts`): each document carries
  next_due_at: when a worker must look at it — `NEVER` when nothing is due, and the lease moment while a
               worker holds it (indexed with `_id`: the due index);
  claim: the holding batch's token (None when free); prev_claim: the token of a lease that ran out.

A worker streams the due set through the due index (one cursor per run), claims a slice of the due order
with at most three indexed `update_many`s whose `next_due_at` becomes a lease moment unique to its token
(so nobody else sees the slice until the lease runs out), reads the slice back with one equality on the
due index, and settles each document with an update that applies only while its token still holds the
claim. A worker killed anywhere leaves its slice leased; when the lease runs out the slice is due again and
the next claim records the dead token in `prev_claim`, so the taker can find what the dead one recorded.

Never holds state between calls: the collection and its index name are all it knows.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor

from storage.database import find_by_ids
from storage.types import Document

NEVER = datetime(9999, 12, 31, tzinfo=UTC)  # "nothing due": sorts after every real time, so `$min` works
DUE_INDEX = [("next_due_at", ASCENDING), ("_id", ASCENDING)]
BY_ID = "_id_"


@dataclass(frozen=True)
class DueRef:
    """A due document as the due stream sees it."""

    id: str
    shop_id: str
    due: datetime


@dataclass(frozen=True)
class Lease:
    """A batch's claim: its token and the moment its lease runs out.

    The moment is unique to the token (a few microseconds from it; MongoDB keeps milliseconds, so two
    batches may share one: the read-back also checks the token), so the read-back is one equality on
    the due index, whatever the batch size.
    """

    token: str
    at: datetime


def new_lease(now: datetime, duration: timedelta) -> Lease:
    token = secrets.token_hex(12)
    return Lease(token, now + duration + timedelta(microseconds=int(token[:5], 16) % 1_000_000))


@dataclass(frozen=True)
class Conditional:
    """One document's settle: applies only while `token` holds its claim (and `when` holds)."""

    id: str
    token: str
    update: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    when: Mapping[str, Any] | None = None


class LeasedCollection:
    """The due stream, range claims, read-back and conditional settles of one collection."""

    def __init__(self, collection: AsyncCollection[Document], due_index: str) -> None:
        self.collection = collection
        self.due_index = due_index

    def due_cursor(self, now: datetime, size: int) -> AsyncCursor[Document]:
        """Every document due at `now` in (next_due_at, _id) order, through the due index.

        Not hinted: SecantusDB answers a hinted find or aggregate by walking the *whole* index (every
        document of the collection, due or not; measured: 29 s instead of 1 s for 10,000 of 100,000),
        while its planner picks the due index for this one-field range by itself, as MongoDB's does.
        """
        return self.collection.find({"next_due_at": {"$lte": now}}, {"_id": 1, "shop_id": 1, "next_due_at": 1}).sort(
            DUE_INDEX).batch_size(size)

    async def due_stream(self, now: datetime, shop_id: str | None, size: int) -> AsyncIterator[list[DueRef]]:
        """The due set in lists of `size`: one cursor for the whole run (a `limit` per batch re-reads the set).

        `shop_id` (`run-once --shop`) is applied to the streamed refs: a second filter field would leave the
        due index's cover (SecantusDB then plans a scan), and refs are cheap to skip.
        """
        batch: list[DueRef] = []
        async for doc in self.due_cursor(now, size):
            if shop_id is not None and doc.get("shop_id") != shop_id:
                continue
            batch.append(DueRef(doc["_id"], doc.get("shop_id", ""), doc["next_due_at"]))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    async def claim(self, refs: Sequence[DueRef], lease: Lease, shop_id: str | None) -> None:
        """Take the documents of this slice of the due order that are still due: their `next_due_at` becomes
        the lease moment, so no other worker sees them until the lease runs out.

        The slice is a range of the due index, (first.due, first.id) ≤ (due, id) ≤ (last.due, last.id), so
        the claim is at most three indexed `update_many`s whatever the batch size (no `_id` list).
        """
        if not refs:
            return
        first, last = refs[0], refs[-1]
        grab = [{"$set": {"prev_claim": "$claim", "claim": {"$literal": lease.token},
                          "next_due_at": {"$literal": lease.at}}}]
        scope: dict[str, Any] = {} if shop_id is None else {"shop_id": shop_id}
        if first.due == last.due:
            ranges = [{"next_due_at": first.due, "_id": {"$gte": first.id, "$lte": last.id}}]
        else:
            ranges = [{"next_due_at": first.due, "_id": {"$gte": first.id}},
                      {"next_due_at": {"$gt": first.due, "$lt": last.due}},
                      {"next_due_at": last.due, "_id": {"$lte": last.id}}]
        for query in ranges:
            await self.collection.update_many({**query, **scope}, grab, hint=self.due_index)

    async def claimed(self, lease: Lease, stages: Sequence[Mapping[str, Any]] = ()) -> list[Document]:
        """The documents this lease holds (one equality on the due index), through extra pipeline stages
        (e.g. `$lookup`s joining what the worker needs: no extra round trip)."""
        docs = await self.aggregate({"next_due_at": lease.at}, stages)
        return [doc for doc in docs if doc.get("claim") == lease.token]  # not another batch with the same moment

    async def aggregate(self, match: Mapping[str, Any], stages: Sequence[Mapping[str, Any]]) -> list[Document]:
        """One `$match` the planner serves from an index by itself (one field: `_id` or `next_due_at`), then
        `stages`. Never hinted (see `due_cursor`)."""
        pipeline: list[Mapping[str, Any]] = [{"$match": dict(match)}, *stages]
        # One batch of any size: a first batch of 101 would cost one more round trip per 1,000 documents.
        return [doc async for doc in await self.collection.aggregate(pipeline, batchSize=100_000)]

    async def settle(self, settles: Sequence[Conditional]) -> dict[str, Document]:
        """Apply each settle (which frees the claim) while its token holds the document and its `when` holds.

        Returns the fresh documents whose settle did not apply although the token still holds them — their
        `when` no longer held (e.g. an ingest write changed them): the caller settles again against these.
        A document whose lease ran out belongs to another worker now and is left alone.
        """
        if not settles:
            return {}
        ops = [UpdateOne({"_id": s.id, "claim": s.token, **(s.when or {})}, s.update, hint=BY_ID)
               for s in settles]
        result = await self.collection.bulk_write(ops, ordered=False)
        if result.matched_count == len(ops):
            return {}
        tokens = {s.id: s.token for s in settles}
        fresh = await find_by_ids(self.collection, list(tokens))
        return {doc["_id"]: doc for doc in fresh if doc.get("claim") == tokens[doc["_id"]]}

    async def write(self, updates: Sequence[Conditional]) -> int:
        """Apply updates to held documents (each only while its token holds the claim): how many applied."""
        if not updates:
            return 0
        ops = [UpdateOne({"_id": u.id, "claim": u.token, **(u.when or {})}, u.update, hint=BY_ID) for u in updates]
        return (await self.collection.bulk_write(ops, ordered=False)).matched_count

    async def release(self, ids: Sequence[str], token: str, due: Mapping[str, datetime]) -> None:
        """Give documents back unchanged (e.g. their shop is paused): free the claim, restore the due time."""
        ops = [UpdateOne({"_id": doc_id, "claim": token},
                         {"$set": {"claim": None, "prev_claim": None, "next_due_at": due.get(doc_id, NEVER)}},
                         hint=BY_ID)
               for doc_id in ids]
        if ops:
            await self.collection.bulk_write(ops, ordered=False)
