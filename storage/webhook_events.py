"""Stored LINE webhook events: persisted before the 200, unique by webhookEventId, handled once.

Document (`webhook_events`, `_id` = "<shop_id>:<webhookEventId>"):
  shop_id, webhook_event_id, type, user_id, event (the raw JSON as LINE sent it),
  is_redelivery, received_at, state ("handling" | "done" | "failed"),
  claim (token of the handler that owns it), lease_until, attempts,
  responded_at (a message was sent in answer: never send another), outcome, error, handled_at.

`webhook_answering`, `_id` = the event's `_id`: method ("reply" | "push"), at - an
answer to that event was about to go out (kept two days).

An event is inserted already leased to the process that received it (with the
`ACKNOWLEDGED` write concern: the 200 follows), so the common path costs its
share of one group insert, one small "answering" insert and a few `update_many`
(one per outcome) per batch of events. If that process dies (or handling fails)
the lease runs out and recovery claims the event again in a batch
(`update_many` with a claim token and a state precondition, read back by `_id`)
- never `find_one_and_update` per event. A duplicate or redelivered event hits
the unique `_id` and is not handled twice.

Every secondary index costs every write of the collection on the embedded
database (about 0.2 ms per index per document, whether its fields change or
not), so `webhook_events` keeps two: the recovery scan and the TTL purge. Look
ups by event go by `_id` (the engine fetches `_id` `$in` lists directly, also
when the filter adds a claim/state precondition).

An answer is marked `answering` before it is sent and `responded_at` after: a
re-run finding the mark without `responded_at` does not know whether the
answer went out. A push carries the event's retry key, so it is simply sent
again (LINE drops the repeat); a reply has no such key, so it is not repeated.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.errors import BulkWriteError

from storage.bulk import only_duplicates
from storage.database import Database
from storage.durability import ACKNOWLEDGED
from storage.keys import shop_scoped
from storage.types import Document, IndexSpec

COLLECTION = "webhook_events"
ANSWERING = "webhook_answering"
HANDLING, DONE, FAILED = "handling", "done", "failed"
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
KEEP_FOR = timedelta(days=30)
KEEP_ANSWERING_FOR = timedelta(days=2)  # retries end within an hour of the event
ID_CHUNK = 25  # events per `_id` `$in` write: `$in` grows superlinearly, and a long write delays acknowledgements

INDEXES: list[IndexSpec] = (
    [
        # SecantusDB uses an index only when it covers every field of the filter,
        # with at most one $in/range and that one last: hence this exact shape.
        IndexSpec(COLLECTION, [("state", ASCENDING), ("lease_until", ASCENDING)], "state_lease"),
        IndexSpec(COLLECTION, [("received_at", ASCENDING)], "received_ttl",
                  expire_after_seconds=int(KEEP_FOR.total_seconds())),
        IndexSpec(ANSWERING, [("at", ASCENDING)], "answering_ttl",
                  expire_after_seconds=int(KEEP_ANSWERING_FOR.total_seconds())),
    ]
)
# Indexes earlier versions made, now only a cost on every write (see above): dropped at start-up.
OBSOLETE_INDEXES: list[tuple[str, str]] = [(COLLECTION, "shop_webhook_event"), (COLLECTION, "claim_state_id")]


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), ID_CHUNK):
        yield list(items[start:start + ID_CHUNK])


def event_key(shop_id: str, webhook_event_id: str) -> str:
    return shop_scoped(shop_id, webhook_event_id)


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
        self._answering = database[ANSWERING]

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
            if not only_duplicates(exc):
                raise
            failed = {int(error["index"]) for error in exc.details.get("writeErrors", [])}
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
        """Before answers go out: remember how each is sent (one small insert; see the module docstring)."""
        if not plans:
            return
        try:
            await self._answering.insert_many(
                [{"_id": plan.key, "method": plan.method, "at": now} for plan in plans], ordered=False)
        except BulkWriteError as exc:  # marked by an earlier attempt (same method: a repeated push)
            if not only_duplicates(exc):
                raise

    async def answering(self, keys: Sequence[str]) -> dict[str, str]:
        """Event `_id` -> how an earlier attempt was about to answer it (for re-runs only)."""
        found: dict[str, str] = {}
        for chunk in _chunks(keys):
            async for doc in self._answering.find({"_id": {"$in": chunk}}):
                found[doc["_id"]] = str(doc["method"])
        return found

    async def finish(self, results: Sequence[HandlingResult], now: datetime) -> None:
        """Record outcomes, each only while its claim still owns the event.

        Successes go out as one `update_many` per (outcome, responded) and 25
        events; a failure keeps the event leased for a back-off, so recovery
        tries it again later.
        """
        groups: dict[tuple[str, bool], list[HandlingResult]] = {}
        failures: list[UpdateOne] = []
        unsent: list[str] = []
        for result in results:
            if result.error is None:
                groups.setdefault((result.outcome, result.responded), []).append(result)
                continue
            fields: dict[str, Any] = {"outcome": result.outcome, "error": result.error[:500],
                                      "lease_until": now + retry_delay(result.attempts)}
            failures.append(UpdateOne({"_id": result.key, "claim": result.claim, "state": HANDLING}, {"$set": fields}))
            if result.answer_unsent:
                unsent.append(result.key)
        for (outcome, responded), done in groups.items():
            fields = {"state": DONE, "outcome": outcome, "handled_at": now}
            if responded:
                fields["responded_at"] = now
            for start in range(0, len(done), ID_CHUNK):
                part = done[start:start + ID_CHUNK]
                await self._events.update_many(
                    {"_id": {"$in": [r.key for r in part]}, "claim": {"$in": sorted({r.claim for r in part})},
                     "state": HANDLING},
                    {"$set": fields},
                )
        if failures:
            await self._events.bulk_write(failures, ordered=False)
        for keys in _chunks(unsent):  # LINE refused those answers: a retry may send them
            await self._answering.delete_many({"_id": {"$in": keys}})

    async def release(self, docs: Sequence[Document], now: datetime) -> None:
        """Events this process accepted but will not handle (it is stopping): let recovery take them now."""
        by_claim: dict[str, list[str]] = {}
        for doc in docs:
            by_claim.setdefault(doc["claim"], []).append(doc["_id"])
        for claim, ids in by_claim.items():
            for chunk in _chunks(ids):
                await self._events.update_many({"_id": {"$in": chunk}, "claim": claim, "state": HANDLING},
                                               {"$set": {"lease_until": now}})

    async def claim_expired(self, now: datetime, *, limit: int = 200) -> tuple[str, list[Document]]:
        """Claim events whose lease ran out (their handler died or failed), oldest first.

        One indexed select, then per previous claim a conditional `update_many`
        per 25 events (still that claim, still handling), read back by `_id`
        and kept where our claim won. Events that used up their attempts are
        marked failed instead of being handled.
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
            for chunk in _chunks(ids):
                await self._events.update_many(
                    {"_id": {"$in": chunk}, "claim": previous, "state": HANDLING},
                    {"$set": {"claim": claim, "lease_until": now + LEASE}, "$inc": {"attempts": 1}},
                )
        claimed: list[Document] = []
        exhausted: list[UpdateOne] = []
        for chunk in _chunks([key for ids in seen.values() for key in ids]):
            async for doc in self._events.find({"_id": {"$in": chunk}}):
                if doc.get("claim") != claim or doc.get("state") != HANDLING:
                    continue  # another process claimed it first
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
        """For tests and operators (no index: never on a request path)."""
        return await self._events.count_documents({"shop_id": shop_id})
