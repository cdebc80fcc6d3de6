"""Stored LINE webhook events: persisted before the 200, unique by webhookEventId, handled once.

Document (`webhook_events`, `_id` = "<shop_id>:<webhookEventId>"):
  shop_id, webhook_event_id, type, user_id, event (the raw JSON as LINE sent it),
  is_redelivery, received_at, state ("handling" | "done" | "failed"),
  claim (token of the handler that owns it), lease_until, attempts,
  answering ({"method": "reply" | "push", "at"}: an answer is about to go out),
  responded_at (a message was sent in answer: never send another), outcome, error, handled_at.

An event is inserted already leased to the process that received it (with the
`ACKNOWLEDGED` write concern: the 200 follows), so the common path costs its
share of one group insert, one bulk "answering" mark and one bulk "done" update
per batch of events. If that process dies (or handling fails) the lease runs
out and recovery claims the event again in a batch (`update_many` with a claim
token and a state precondition, read back by token) - never
`find_one_and_update` per event. A duplicate or redelivered event hits the
unique `_id` and is not handled twice.

`answering` is written before an answer is sent and `responded_at` after: a
re-run finding `answering` without `responded_at` does not know whether the
answer went out. A push carries the event's retry key, so it is simply sent
again (LINE drops the repeat); a reply has no such key, so it is not repeated.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.errors import BulkWriteError

from storage.database import Database, Document, IndexSpec
from storage.durability import ACKNOWLEDGED

COLLECTION = "webhook_events"
HANDLING, DONE, FAILED = "handling", "done", "failed"
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
KEEP_FOR = timedelta(days=30)
DUPLICATE_KEY = 11000
RELEASE_CHUNK = 50  # `$in` on _id grows superlinearly on the embedded database

INDEXES: list[IndexSpec] = (
    [
        IndexSpec(
            COLLECTION, [("shop_id", ASCENDING), ("webhook_event_id", ASCENDING)], "shop_webhook_event", unique=True
        ),
        # SecantusDB uses an index only when it covers every field of the filter,
        # with at most one $in/range and that one last: hence these exact shapes.
        IndexSpec(COLLECTION, [("state", ASCENDING), ("lease_until", ASCENDING)], "state_lease"),
        IndexSpec(COLLECTION, [("claim", ASCENDING), ("state", ASCENDING), ("_id", ASCENDING)], "claim_state_id"),
        IndexSpec(COLLECTION, [("received_at", ASCENDING)], "received_ttl",
                  expire_after_seconds=int(KEEP_FOR.total_seconds())),
    ]
)


def event_key(shop_id: str, webhook_event_id: str) -> str:
    return f"{shop_id}:{webhook_event_id}"


def new_claim() -> str:
    return secrets.token_hex(12)


def retry_delay(attempts: int) -> timedelta:
    """Back-off before a failed event is tried again: 30 s, 1 min, 2 min, ..."""
    return timedelta(seconds=30 * 2 ** max(0, attempts - 1))


def _user_id(event: dict[str, Any]) -> str | None:
    source = event.get("source")
    return source.get("userId") if isinstance(source, dict) else None


@dataclass(frozen=True)
class StoredBatch:
    """What one webhook request stored: the new events (to handle) and how many were duplicates."""

    claim: str
    new: list[Document]
    duplicates: int


@dataclass(frozen=True)
class HandlingResult:
    """How handling one event ended; written by `finish` only while `claim` still owns the event."""

    key: str
    claim: str
    outcome: str
    error: str | None = None
    attempts: int = 1
    responded: bool = False  # an answer went out now
    answer_unsent: bool = False  # LINE refused the answer for sure: a retry may send it (clears `answering`)


@dataclass(frozen=True)
class AnswerPlan:
    """An answer about to be sent for a stored event (see `mark_answering`)."""

    key: str
    claim: str
    method: str  # "reply" or "push"


def event_documents(shop_id: str, events: Sequence[dict[str, Any]], now: datetime, claim: str) -> list[Document]:
    """The stored form of a request's events, leased to `claim` (pure: the caller decides how to write them)."""
    docs: list[Document] = []
    for event in events:
        event_id = str(event["webhookEventId"])
        delivery = event.get("deliveryContext")
        docs.append(
            {
                "_id": event_key(shop_id, event_id),
                "shop_id": shop_id,
                "webhook_event_id": event_id,
                "type": event.get("type"),
                "user_id": _user_id(event),
                "event": event,
                "is_redelivery": bool(delivery.get("isRedelivery")) if isinstance(delivery, dict) else False,
                "received_at": now,
                "state": HANDLING,
                "claim": claim,
                "lease_until": now + LEASE,
                "attempts": 1,
            }
        )
    return docs


class WebhookEventRepository:
    def __init__(self, database: Database) -> None:
        self._events = database[COLLECTION]
        self._acknowledging = self._events.with_options(write_concern=ACKNOWLEDGED)

    async def insert_new(self, docs: Sequence[Document]) -> list[bool]:
        """Insert events durably (one unordered bulk insert, `ACKNOWLEDGED`); per document: was it new?

        A document whose `_id` is already stored - or that repeats an earlier
        one of `docs` - is not new. Any other failure raises: nothing may be
        acknowledged then.
        """
        if not docs:
            return []
        failed: set[int] = set()
        try:
            await self._acknowledging.insert_many(list(docs), ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors) or exc.details.get("writeConcernErrors"):
                raise
            failed = {error["index"] for error in errors}
        seen: set[str] = set()
        new: list[bool] = []
        for index, doc in enumerate(docs):
            fresh = index not in failed and doc["_id"] not in seen
            seen.add(doc["_id"])
            new.append(fresh)
        return new

    async def store(self, shop_id: str, events: Sequence[dict[str, Any]], now: datetime) -> StoredBatch:
        """Insert every event, leased to a new claim; duplicates are skipped."""
        claim = new_claim()
        docs = event_documents(shop_id, events, now, claim)
        fresh = await self.insert_new(docs)
        new = [doc for doc, is_new in zip(docs, fresh, strict=True) if is_new]
        return StoredBatch(claim, new, len(docs) - len(new))

    async def mark_answering(self, plans: Sequence[AnswerPlan], now: datetime) -> None:
        """Before answers go out: remember how each is sent, in one bulk write (see the module docstring)."""
        if not plans:
            return
        await self._events.bulk_write(
            [UpdateOne({"_id": plan.key, "claim": plan.claim, "state": HANDLING},
                       {"$set": {"answering": {"method": plan.method, "at": now}}}) for plan in plans],
            ordered=False,
        )

    async def finish(self, results: Sequence[HandlingResult], now: datetime) -> None:
        """Record outcomes in one bulk write, each only while its claim still owns the event.

        A failure keeps the event leased for a back-off, so recovery tries it again later.
        """
        if not results:
            return
        ops = []
        for result in results:
            fields: dict[str, Any] = {"outcome": result.outcome}
            if result.responded:
                fields["responded_at"] = now
            if result.error is None:
                fields.update({"state": DONE, "handled_at": now})
            else:
                fields.update({"error": result.error[:500], "lease_until": now + retry_delay(result.attempts)})
            update: dict[str, Any] = {"$set": fields}
            if result.answer_unsent:
                update["$unset"] = {"answering": ""}
            ops.append(UpdateOne({"_id": result.key, "claim": result.claim, "state": HANDLING}, update))
        await self._events.bulk_write(ops, ordered=False)

    async def release(self, docs: Sequence[Document], now: datetime) -> None:
        """Events this process accepted but will not handle (it is stopping): let recovery take them now."""
        by_claim: dict[str, list[str]] = {}
        for doc in docs:
            by_claim.setdefault(doc["claim"], []).append(doc["_id"])
        for claim, ids in by_claim.items():
            for start in range(0, len(ids), RELEASE_CHUNK):
                await self._events.update_many(
                    {"claim": claim, "state": HANDLING, "_id": {"$in": ids[start:start + RELEASE_CHUNK]}},
                    {"$set": {"lease_until": now}},
                )

    async def claim_expired(self, now: datetime, *, limit: int = 200) -> tuple[str, list[Document]]:
        """Claim events whose lease ran out (their handler died or failed), oldest first.

        One indexed select, then per previous claim one conditional `update_many`
        (still that claim, still handling), read back by our new claim. Events
        that used up their attempts are marked failed instead of being handled.
        """
        seen: dict[str, list[str]] = {}
        async for doc in self._events.find(
            {"state": HANDLING, "lease_until": {"$lte": now}}, {"_id": 1, "claim": 1}, limit=limit
        ).sort("lease_until", ASCENDING):
            seen.setdefault(doc.get("claim") or "", []).append(doc["_id"])
        claim = new_claim()
        if not seen:
            return claim, []
        for previous, ids in seen.items():
            for start in range(0, len(ids), RELEASE_CHUNK):
                await self._events.update_many(
                    {"claim": previous, "state": HANDLING, "_id": {"$in": ids[start:start + RELEASE_CHUNK]}},
                    {"$set": {"claim": claim, "lease_until": now + LEASE}, "$inc": {"attempts": 1}},
                )
        claimed: list[Document] = []
        exhausted: list[UpdateOne] = []
        async for doc in self._events.find({"claim": claim}):
            if doc["attempts"] > MAX_ATTEMPTS:
                exhausted.append(UpdateOne({"_id": doc["_id"], "claim": claim, "state": HANDLING},
                                           {"$set": {"state": FAILED, "handled_at": now}}))
            else:
                claimed.append(doc)
        if exhausted:
            await self._events.bulk_write(exhausted, ordered=False)
        return claim, claimed

    async def get(self, shop_id: str, webhook_event_id: str) -> Document | None:
        return await self._events.find_one({"_id": event_key(shop_id, webhook_event_id)})

    async def count(self, shop_id: str) -> int:
        return await self._events.count_documents({"shop_id": shop_id})
