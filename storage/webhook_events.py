"""Stored LINE webhook events: persisted before the 200, unique by webhookEventId, handled once.

Document (`webhook_events`, `_id` = "<shop_id>:<webhookEventId>"):
  shop_id, webhook_event_id, type, user_id, event (the raw JSON as LINE sent it),
  is_redelivery, received_at, state ("handling" | "done" | "failed"),
  claim (token of the handler that owns it), lease_until, attempts,
  responded_at (a message was sent in answer: never send another), outcome, error, handled_at.

An event is inserted already leased to the process that received it, so the
common path costs one bulk insert and one bulk "done" update per request. If
that process dies (or handling fails) the lease runs out and recovery claims the
event again in a batch (`update_many` with a claim token and a state
precondition, read back by token) - never `find_one_and_update` per event.
A duplicate or redelivered event hits the unique `_id` and is not handled twice.
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

COLLECTION = "webhook_events"
HANDLING, DONE, FAILED = "handling", "done", "failed"
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
KEEP_FOR = timedelta(days=30)
DUPLICATE_KEY = 11000

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
    key: str
    outcome: str
    error: str | None = None
    attempts: int = 1


class WebhookEventRepository:
    def __init__(self, database: Database) -> None:
        self._events = database[COLLECTION]

    async def store(self, shop_id: str, events: Sequence[dict[str, Any]], now: datetime) -> StoredBatch:
        """Insert every event (one unordered bulk insert), leased to the caller; duplicates are skipped."""
        claim = new_claim()
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
        if not docs:
            return StoredBatch(claim, [], 0)
        failed: set[int] = set()
        try:
            await self._events.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors) or exc.details.get("writeConcernErrors"):
                raise
            failed = {error["index"] for error in errors}
        # The same event twice in one request: only its first copy counts as new.
        seen: set[str] = set()
        new = []
        for index, doc in enumerate(docs):
            if index not in failed and doc["_id"] not in seen:
                seen.add(doc["_id"])
                new.append(doc)
        return StoredBatch(claim, new, len(docs) - len(new))

    async def finish(self, results: Sequence[HandlingResult], claim: str, now: datetime) -> None:
        """Record outcomes in one bulk write, only while we still hold the claim.

        A failure keeps the event leased for a back-off, so recovery tries it again later.
        """
        if not results:
            return
        ops = []
        for result in results:
            if result.error is None:
                update: dict[str, Any] = {"$set": {"state": DONE, "outcome": result.outcome, "handled_at": now}}
            else:
                update = {"$set": {"outcome": result.outcome, "error": result.error[:500],
                                   "lease_until": now + retry_delay(result.attempts)}}
            ops.append(UpdateOne({"_id": result.key, "claim": claim, "state": HANDLING}, update))
        await self._events.bulk_write(ops, ordered=False)

    async def mark_responded(self, key: str, now: datetime) -> None:
        """A message went out for this event: a re-run after a crash must not send another."""
        await self._events.update_one({"_id": key}, {"$set": {"responded_at": now}})

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
            await self._events.update_many(
                {"claim": previous, "state": HANDLING, "_id": {"$in": ids}},
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
