"""Broadcasts to a segment and their frozen audience batches (at most 500 LINE users each).

`broadcasts` (`_id` = bkey = `keys.shop_scoped(shop_id, broadcast_id)`): shop_id, broadcast_id, segment_id, filter (the
segment's filter when the broadcast was created), messages (as given), send_at, key (the broadcast's
delivery key: names its records, click links and conversions), status (scheduled | sending | done |
cancelled), targeted (the segment's size when created; the frozen audience once sending), created_at,
started_at, finished_at, cancelled_at, batches (how many), bounds (each batch's first LINE user ID, in
order: which batch holds a customer, without reading the batches), counts {sent, failed, held, skipped:
{reason: n}, cancelled}, settled ([seq] of the batches counted: each is counted once), and the leased
fields of the start (next_due_at = send_at while scheduled, claim, prev_claim; see `storage.leases`).

`broadcast_batches` (`_id` = `keys.compose(shop_id, broadcast_id, seq as 6 digits)`): shop_id, bkey, broadcast_id, seq, users (sorted,
≤ 500; batches partition the audience in LINE user ID order), state (pending | done | cancelled),
attempts, plan (the send-time decision, written before the multicast so a retry sends the same request:
{held, skipped: {reason: [users]}}; the recipients are the users but those), outcome ({status: sent | failed | cancelled, line_status,
request_id}), settled_at, sent_at (when its multicast was accepted), and the leased fields (next_due_at, claim, prev_claim).

Freezing is one transaction: every batch inserted and the broadcast moved from scheduled to sending, or
nothing — a crash, a second worker or a cancel in between leaves no partial audience.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError, OperationFailure

from core.line_limits import MAX_MULTICAST_RECIPIENTS
from storage import keys
from storage.database import Database, Document, IndexSpec, find_by_ids
from storage.leases import DUE_INDEX, NEVER, LeasedCollection
from storage.paging import newest_first_page

BROADCASTS = "broadcasts"
BATCHES = "broadcast_batches"
BROADCAST_DUE = "broadcast_due"
BATCH_DUE = "batch_due"
INDEXES: list[IndexSpec] = [
    IndexSpec(BROADCASTS, DUE_INDEX, BROADCAST_DUE),
    IndexSpec(BROADCASTS, [("shop_id", ASCENDING), ("started_at", ASCENDING)], "shop_started"),
    IndexSpec(BROADCASTS, [("shop_id", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)], "shop_created"),
    IndexSpec(BATCHES, DUE_INDEX, BATCH_DUE),
    IndexSpec(BATCHES, [("bkey", ASCENDING), ("seq", ASCENDING)], "broadcast_seq"),
]
ACTIVE = ("sending", "done", "cancelled")  # statuses of a broadcast that started (it has batches)
MAX_SPAN = timedelta(days=7)  # a broadcast's batches all go out within this long after it started


def broadcast_key(shop_id: str, broadcast_id: str) -> str:
    return keys.shop_scoped(shop_id, broadcast_id)


def batch_id(shop_id: str, broadcast_id: str, seq: int) -> str:
    """A batch's `_id`: its broadcast's parts and its number (zero-padded: `_id` order is batch order)."""
    return keys.compose(shop_id, broadcast_id, f"{seq:06d}")


def chunks(users: Sequence[str], size: int = MAX_MULTICAST_RECIPIENTS) -> list[list[str]]:
    return [list(users[i:i + size]) for i in range(0, len(users), size)]


def plan_recipients(users: Sequence[str], plan: Mapping[str, Any]) -> list[str]:
    """Who a batch's stored plan sends to: its users but the held and the skipped."""
    left_out = set(plan.get("held") or []).union(*(plan.get("skipped") or {}).values())
    return [u for u in users if u not in left_out]


@dataclass
class Exposures:
    """When each customer of a shop was sent a broadcast lately (the frequency cap counts these)."""

    sends: dict[str, list[datetime]] = field(default_factory=dict)

    def of(self, line_user_id: str) -> list[datetime]:
        return self.sends.get(line_user_id, [])


class BroadcastRepository:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._broadcasts = database[BROADCASTS]
        self._batches = database[BATCHES]
        self.starts = LeasedCollection(self._broadcasts, BROADCAST_DUE)
        self.batches = LeasedCollection(self._batches, BATCH_DUE)

    # --- the broadcast ---

    async def create(self, doc: Document) -> tuple[Document, bool]:
        """Insert once; the same `_id` again answers the stored broadcast (False: nothing new)."""
        try:
            await self._broadcasts.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._broadcasts.find_one({"_id": doc["_id"]})
            assert existing is not None
            return existing, False
        return doc, True

    async def get(self, shop_id: str, broadcast_id: str) -> Document | None:
        return await self._broadcasts.find_one({"_id": broadcast_key(shop_id, broadcast_id)})

    async def page(self, shop_id: str, after: str | None, limit: int) -> list[Document]:
        """The shop's broadcasts newest first (keyset paging on `created_at`)."""
        return await newest_first_page(self._broadcasts, {"shop_id": shop_id}, "created_at", after, limit)

    async def get_many(self, bkeys: Sequence[str]) -> dict[str, Document]:
        return {doc["_id"]: doc for doc in await find_by_ids(self._broadcasts, bkeys)}

    async def cancel(self, shop_id: str, broadcast_id: str, now: datetime) -> Document | None:
        """Scheduled or sending → cancelled (no batch starts after this); answers the broadcast as it is now."""
        await self._broadcasts.update_one(
            {"_id": broadcast_key(shop_id, broadcast_id), "status": {"$in": ["scheduled", "sending"]}},
            {"$set": {"status": "cancelled", "cancelled_at": now, "next_due_at": NEVER}})
        return await self.get(shop_id, broadcast_id)

    async def freeze(self, bkey: str, token: str, audience: Sequence[str], now: datetime) -> bool:
        """In one transaction: the audience as batches due now, and the broadcast (still scheduled and held by
        `token`) sending. False when it was cancelled, or started by another worker, meanwhile."""
        batches = chunks(sorted(audience))
        shop_id, broadcast_id = keys.split(bkey, 2)
        docs = [{"_id": batch_id(shop_id, broadcast_id, seq), "shop_id": shop_id, "bkey": bkey, "broadcast_id": broadcast_id,
                 "seq": seq, "users": users, "state": "pending", "attempts": 0, "next_due_at": now,
                 "claim": None, "prev_claim": None} for seq, users in enumerate(batches)]
        started = {"status": "sending", "started_at": now, "targeted": len(audience), "batches": len(docs),
                   "bounds": [users[0] for users in batches], "settled": [], "next_due_at": NEVER,
                   "claim": None, "prev_claim": None}
        if not docs:
            started.update(status="done", finished_at=now)
        try:
            async with self._database.client.start_session() as session:
                return bool(await session.with_transaction(partial(self._freeze, bkey, token, docs, started)))
        except DuplicateKeyError:
            return False
        except OperationFailure as exc:
            if exc.code == 11000:
                return False
            raise

    async def _freeze(self, bkey: str, token: str, docs: list[Document], started: Document,
                      session: AsyncClientSession) -> bool:
        result = await self._broadcasts.update_one({"_id": bkey, "status": "scheduled", "claim": token},
                                                   {"$set": started}, session=session)
        if result.modified_count != 1:
            await session.abort_transaction()
            return False
        if docs:
            await self._batches.insert_many(docs, ordered=True, session=session)
        return True

    async def count(self, counts: Sequence[tuple[str, int, Mapping[str, int]]], now: datetime) -> None:
        """Add each settled batch's figures to its broadcast once (a batch counted before is skipped), then
        mark the broadcasts whose every batch is counted as done."""
        ops = [UpdateOne({"_id": bkey, "settled": {"$ne": seq}},
                         {"$inc": {f"counts.{name}": n for name, n in figures.items() if n},
                          "$push": {"settled": seq}})
               for bkey, seq, figures in counts]
        if not ops:
            return
        await self._broadcasts.bulk_write(ops, ordered=False)
        for bkey in sorted({bkey for bkey, _, _ in counts}):
            await self._broadcasts.update_one(
                {"_id": bkey, "status": "sending", "$expr": {"$eq": [{"$size": "$settled"}, "$batches"]}},
                {"$set": {"status": "done", "finished_at": now}})

    async def started_between(self, shop_id: str, start: datetime, end: datetime) -> list[Document]:
        """The shop's broadcasts that started in [start, end] (few per shop), without their batches."""
        return [doc async for doc in self._broadcasts.find(
            {"shop_id": shop_id, "started_at": {"$gte": start, "$lte": end}},
            {"messages": 0, "filter": 0, "settled": 0})]

    # --- its batches ---

    async def batch_of(self, broadcast: Mapping[str, Any], line_user_id: str) -> Document | None:
        """The batch whose range holds this customer (from the broadcast's bounds: one `_id` read)."""
        bounds = broadcast.get("bounds") or []
        seq = bisect.bisect_right(bounds, line_user_id) - 1
        if seq < 0:
            return None
        return await self._batches.find_one({"_id": batch_id(broadcast["shop_id"], broadcast["broadcast_id"], seq)})

    async def batches_of(self, bkey: str) -> list[Document]:
        return [doc async for doc in self._batches.find({"bkey": bkey}).sort("seq", ASCENDING)]

    async def exposures(self, shop_id: str, since: datetime, until: datetime) -> Exposures:
        """Every customer of the shop sent a broadcast in [since, until], with when (the frequency cap).

        Reads the batches of the broadcasts started since `since - MAX_SPAN` (an index range each):
        proportional to the shop's recent broadcast audiences, read once per run that needs them.
        """
        found = Exposures()
        for broadcast in await self.started_between(shop_id, since - MAX_SPAN, until):
            async for batch in self._batches.find({"bkey": broadcast["_id"]}, {"users": 1, "plan": 1, "sent_at": 1,
                                                                                "outcome.status": 1}):
                at = batch.get("sent_at")
                if at is None or (batch.get("outcome") or {}).get("status") != "sent" or not since <= at <= until:
                    continue
                for user in plan_recipients(batch.get("users") or [], batch.get("plan") or {}):
                    found.sends.setdefault(user, []).append(at)
        return found
