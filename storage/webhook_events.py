"""Stored LINE webhook events: persisted before the 200, unique by webhookEventId, handled once.

The events of the requests that arrive together are stored as ONE document
(`webhook_batches`), not one per event: on the embedded database a document
write costs about a millisecond whatever its size, while an event inside a
document costs a twentieth of that (measured: 0.44 ms per event inserted one
document each, 0.065 ms per event fifty to a document; 0.97 ms vs 0.10 ms per
event to record outcomes). A webhook then costs its share of one insert at
the acknowledgement and of one update per handling batch - a few hundredths
of the database's time per event instead of three or four writes.

Document (`webhook_batches`, `_id` = a random batch ID):
  keys: the events' keys "<shop_id>:<webhookEventId>" (unique multikey index:
        a duplicate or redelivered event is never stored twice),
  events: [{key, shop_id, webhook_event_id, type, user_id, event (as LINE sent it),
            is_redelivery}],
  received_at, state ("handling" | "done" | "failed"), claim (token of the
  handler that owns the batch), lease_until, attempts, handled_at.

What handling did is written once per HANDLING batch (`webhook_handling`,
`_id` = a random token), whichever stored batches its events came from: on
the embedded database every write statement costs about a millisecond, so a
write per stored batch touched would cost more than the events themselves.
  batches: the stored batches its events belong to (multikey index: recovery
           reads what earlier attempts did), at,
  answering: {event key: "reply" | "push"} - an answer was about to go out
             (inserted before the first answer is sent),
  results: {event key: {outcome, responded_at?, error?, unsent?}} - after.

The process that stored a batch owns it (leased, under the claim its
repository stores every batch with) and handles its events; once the last of
them is handled the batch is closed (`close`: marked done - or, when some event
failed, its lease shortened to a back-off, so recovery retries exactly the
events without a successful result). The webhook closes later, a few batches
per statement (`bot.closer`): a closing rewrites every index entry of the batch,
and an event's state already follows from its handling record. If the process dies the lease runs out and
recovery claims the whole batch (one conditional `update_many`, a claim
token and a state precondition) - never `find_one_and_update`.

An answer is marked `answering` before it is sent and `responded_at` after: a
re-run finding the mark without `responded_at` does not know whether the
answer went out. A push carries the event's retry key, so it is simply sent
again (LINE drops the repeat); a reply has no such key, so it is not repeated.
An answer LINE surely refused (`unsent`) voids its mark: a retry may send it.

Earlier versions stored one document per event in `webhook_events`; the
events of those still waiting are moved into batches by `adopt_legacy`
(recovery runs it at start-up), the rest expire there by its TTL index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING

from storage.bulk import batch_document, insert_together, new_claim
from storage.database import Database
from storage.durability import ACKNOWLEDGED, UNSYNCED
from storage.keys import shop_scoped
from storage.types import Document, IndexSpec

COLLECTION = "webhook_batches"
HANDLED = "webhook_handling"  # what each handling batch did (see above)
LEGACY = "webhook_events"  # one document per event (earlier versions)
HANDLING, DONE, FAILED = "handling", "done", "failed"
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
KEEP_FOR = timedelta(days=30)
ID_CHUNK = 25  # batches per `_id` `$in` write: a long write delays acknowledgements
EVENT_FIELDS = ("key", "shop_id", "webhook_event_id", "type", "user_id", "event", "is_redelivery")

INDEXES: list[IndexSpec] = [
    # SecantusDB uses an index only when it covers every field of the filter,
    # with at most one $in/range and that one last: hence this exact shape.
    IndexSpec(COLLECTION, [("state", ASCENDING), ("lease_until", ASCENDING)], "state_lease"),
    IndexSpec(COLLECTION, [("keys", ASCENDING)], "event_keys", unique=True),
    IndexSpec(COLLECTION, [("received_at", ASCENDING)], "received_ttl",
              expire_after_seconds=int(KEEP_FOR.total_seconds())),
    IndexSpec(HANDLED, [("batches", ASCENDING)], "handled_batches"),
    IndexSpec(HANDLED, [("at", ASCENDING)], "handled_ttl", expire_after_seconds=int(KEEP_FOR.total_seconds())),
]
# Indexes earlier versions made, now only a cost on every write: dropped at start-up.
OBSOLETE_INDEXES: list[tuple[str, str]] = [(LEGACY, "shop_webhook_event"), (LEGACY, "claim_state_id")]


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), ID_CHUNK):
        yield list(items[start:start + ID_CHUNK])


def event_key(shop_id: str, webhook_event_id: str) -> str:
    return shop_scoped(shop_id, webhook_event_id)


def retry_delay(attempts: int) -> timedelta:
    """Back-off before a failed event is tried again: 30 s, 1 min, 2 min, ..."""
    return timedelta(seconds=30 * 2 ** max(0, attempts - 1))


def _user_id(event: dict[str, Any]) -> str | None:
    source = event.get("source")
    return source.get("userId") if isinstance(source, dict) else None


@dataclass(frozen=True)
class StoredBatch:
    """What one store call kept: the new events (to handle) and how many were duplicates."""

    claim: str
    new: list[Document]
    duplicates: int


@dataclass(frozen=True)
class HandlingResult:
    """How handling one event ended; written by `finish` only while `claim` still owns its batch."""

    key: str
    claim: str
    outcome: str
    error: str | None = None
    attempts: int = 1
    responded: bool = False  # an answer went out now
    answer_unsent: bool = False  # LINE refused the answer for sure: a retry may send it (voids `answering`)
    batch: str = ""  # the stored batch it came from


@dataclass(frozen=True)
class AnswerPlan:
    """An answer about to be sent for a stored event (see `mark_answering`)."""

    key: str
    claim: str
    method: str  # "reply" or "push"
    batch: str
    attempts: int = 1

    @classmethod
    def of(cls, doc: Document, method: str) -> AnswerPlan:
        return cls(doc["_id"], doc["claim"], method, doc["batch"], int(doc.get("attempts", 1)))


@dataclass(frozen=True)
class Closing:
    """A stored batch whose every event its holder has handled: done when all succeeded, else retried later."""

    batch: str
    claim: str
    complete: bool
    attempts: int = 1


def closings(results: Sequence[HandlingResult], closing: Mapping[str, bool]) -> list[Closing]:
    """The stored batches `closing` names (batch -> every event succeeded), with the claim and attempts their
    events' results carry (pure)."""
    claims: dict[str, str] = {}
    attempts: dict[str, int] = {}
    for result in results:
        claims[result.batch] = result.claim
        attempts[result.batch] = max(attempts.get(result.batch, 1), result.attempts)
    return [Closing(batch, claims[batch], complete, attempts.get(batch, 1))
            for batch, complete in sorted(closing.items())]


def event_documents(shop_id: str, events: Sequence[dict[str, Any]], now: datetime) -> list[Document]:
    """A request's events as handling sees them (pure); `insert_new` adds where each was stored."""
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
                "attempts": 1,
            }
        )
    return docs


def _batch_document(docs: Sequence[Document], received_at: datetime, claim: str) -> Document:
    return batch_document(docs, received_at, state=HANDLING, lease=LEASE, claim=claim,
                          event=lambda doc: {"key": doc["_id"], **{f: doc[f] for f in EVENT_FIELDS[1:]}})


def _event_views(batch: Document, records: Sequence[Document]) -> list[Document]:
    """Each event of a stored batch as handling sees it, with what earlier handling batches recorded.

    Records are read in attempt order: a success is final, a later mark or failure replaces an earlier one,
    and an answer LINE refused voids its `answering` mark.
    """
    answering: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (r.get("attempt", 1), r["at"])):
        answering.update(record.get("answering") or {})
        for key, result in (record.get("results") or {}).items():
            if result.get("unsent"):
                answering.pop(key, None)
            if key not in results or results[key].get("error") is not None:
                results[key] = result
    views: list[Document] = []
    for entry in batch["events"]:
        result = results.get(entry["key"]) or {}
        if result and result.get("error") is None or batch["state"] == DONE:
            state = DONE
        else:
            state = FAILED if batch["state"] == FAILED else HANDLING
        views.append({
            "_id": entry["key"], **{f: entry.get(f) for f in EVENT_FIELDS[1:]},
            "batch": batch["_id"], "claim": batch.get("claim"), "received_at": batch["received_at"],
            "lease_until": batch.get("lease_until"), "attempts": batch.get("attempts", 1), "state": state,
            "outcome": result.get("outcome"), "error": result.get("error"),
            "answering": answering.get(entry["key"]), "responded_at": result.get("responded_at"),
            "handled_at": batch.get("handled_at"),
        })
    return views


class WebhookEventRepository:
    def __init__(self, database: Database) -> None:
        self._batches = database[COLLECTION]
        self._acknowledging = self._batches.with_options(write_concern=ACKNOWLEDGED)
        self._handled = database[HANDLED]
        # The `answering` mark is synced before any answer goes out; the rest need not be: lost with an
        # unsynced end of the log, the events are handled again and the marks keep their answers single.
        self._marking = self._handled.with_options(write_concern=ACKNOWLEDGED)
        self._handled = self._handled.with_options(write_concern=UNSYNCED)
        self._closing = self._batches.with_options(write_concern=UNSYNCED)
        self._legacy = database[LEGACY]
        self.holder = new_claim()  # the claim of every batch this repository stores (see `batch_document`)

    async def insert_new(self, docs: Sequence[Document]) -> list[bool]:
        """Store events durably (`ACKNOWLEDGED`) as one batch; per document: was it new?

        A document whose key is already stored - or that repeats an earlier
        one of `docs` - is not new. When the batch meets a stored duplicate
        (a redelivery), or would exceed a document's 16 MB, the events are
        stored one batch each instead, so the new ones are kept. Any other failure raises: nothing may be
        acknowledged then.
        """
        if not docs:
            return []
        now = docs[0]["received_at"]
        return await insert_together(self._acknowledging, docs, lambda group: _batch_document(group, now, self.holder),
                                     apart=any(doc["is_redelivery"] for doc in docs))

    async def store(self, shop_id: str, events: Sequence[dict[str, Any]], now: datetime) -> StoredBatch:
        """Insert every event (duplicates skipped), leased to this caller."""
        docs = event_documents(shop_id, events, now)
        fresh = await self.insert_new(docs)
        new = [doc for doc, is_new in zip(docs, fresh, strict=True) if is_new]
        return StoredBatch(new[0]["claim"] if new else new_claim(), new, len(docs) - len(new))

    async def mark_answering(self, plans: Sequence[AnswerPlan], now: datetime) -> str | None:
        """Before answers go out: remember how each is sent (one insert for the handling batch).

        Returns the record's ID, for `finish` to add the outcomes to; None when there is nothing to mark.
        """
        if not plans:
            return None
        record = new_claim()
        await self._marking.insert_one({
            "_id": record, "at": now, "attempt": max(plan.attempts for plan in plans),
            "batches": sorted({plan.batch for plan in plans}),
            "answering": {plan.key: plan.method for plan in plans},
        })
        return record

    async def finish(self, results: Sequence[HandlingResult], now: datetime,
                     closing: Mapping[str, bool] | None = None, record: str | None = None) -> None:
        """Record outcomes (one write for the handling batch), then close the stored batches in `closing`.

        `closing` names the stored batches this call handles the last events of
        (for their owner): True when every event of it succeeded (the batch is
        done), False when some failed (see `close`).
        """
        if not results:
            return
        outcomes: dict[str, dict[str, Any]] = {}
        for result in results:
            entry: dict[str, Any] = {"outcome": result.outcome}
            if result.responded:
                entry["responded_at"] = now
            if result.error is not None:
                entry["error"] = result.error[:500]
            if result.answer_unsent:
                entry["unsent"] = True
            outcomes[result.key] = entry
        if record is not None:
            await self._handled.update_one({"_id": record}, {"$set": {"results": outcomes}})
        else:
            await self._handled.insert_one({
                "_id": new_claim(), "at": now, "attempt": max(result.attempts for result in results),
                "batches": sorted({result.batch for result in results}), "results": outcomes,
            })
        await self.close(closings(results, closing or {}), now)

    async def close(self, batches: Sequence[Closing], now: datetime) -> None:
        """Close handled stored batches, each only while its holder's claim still holds it: done when every event
        succeeded, else its lease shortens to a back-off and recovery retries the events without a successful
        result. Events' states do not wait for this (they follow from the handling records)."""
        done: dict[str, list[str]] = {}
        retry: dict[tuple[str, int], list[str]] = {}
        for closing in batches:
            if closing.complete:
                done.setdefault(closing.claim, []).append(closing.batch)
            else:
                retry.setdefault((closing.claim, closing.attempts), []).append(closing.batch)
        for claim, ids in done.items():  # one claim, usually: its holder stored them all
            for chunk in _chunks(ids):
                await self._closing.update_many({"_id": {"$in": chunk}, "claim": claim, "state": HANDLING},
                                                {"$set": {"state": DONE, "handled_at": now}})
        for (claim, tried), ids in retry.items():
            for chunk in _chunks(ids):
                await self._closing.update_many(
                    {"_id": {"$in": chunk}, "claim": claim, "state": HANDLING},
                    {"$set": {"lease_until": now + retry_delay(tried), "handled_at": now}})

    async def release(self, docs: Sequence[Document], now: datetime) -> None:
        """Events this process accepted but will not handle (it is stopping): let recovery take them now."""
        by_claim: dict[str, set[str]] = {}
        for doc in docs:
            by_claim.setdefault(doc["claim"], set()).add(doc["batch"])
        for claim, batches in by_claim.items():
            for chunk in _chunks(sorted(batches)):
                await self._batches.update_many({"_id": {"$in": chunk}, "claim": claim, "state": HANDLING},
                                                {"$set": {"lease_until": now}})

    async def _records(self, batch: str) -> list[Document]:
        return [record async for record in self._handled.find({"batches": batch})]

    async def claim_expired(self, now: datetime, *, limit: int = 20) -> tuple[str, list[Document]]:
        """Claim stored batches whose lease ran out (their handler died or some event failed), oldest first.

        One indexed select, then per previous claim a conditional `update_many`
        (still that claim, still handling), read back by `_id` and kept where
        our claim won. Returns the events still without a successful result
        (with the answers earlier attempts marked); a batch with none left is
        marked done, one that used up its attempts failed.
        """
        seen: dict[str, list[str]] = {}
        async for doc in self._batches.find(
            {"state": HANDLING, "lease_until": {"$lte": now}}, {"_id": 1, "claim": 1}, limit=limit
        ).sort("lease_until", ASCENDING):
            seen.setdefault(doc.get("claim") or "", []).append(doc["_id"])
        claim = new_claim()
        if not seen:
            return claim, []
        for previous, ids in seen.items():
            for chunk in _chunks(ids):
                await self._batches.update_many(
                    {"_id": {"$in": chunk}, "claim": previous, "state": HANDLING},
                    {"$set": {"claim": claim, "lease_until": now + LEASE}, "$inc": {"attempts": 1}},
                )
        claimed: list[Document] = []
        ended: dict[str, list[str]] = {DONE: [], FAILED: []}
        for chunk in _chunks([key for ids in seen.values() for key in ids]):
            async for batch in self._batches.find({"_id": {"$in": chunk}}):
                if batch.get("claim") != claim or batch.get("state") != HANDLING:
                    continue  # another process claimed it first
                views = _event_views(batch, await self._records(batch["_id"]))
                waiting = [view for view in views if view["state"] == HANDLING]
                if waiting and batch["attempts"] <= MAX_ATTEMPTS:
                    claimed.extend(waiting)
                else:
                    ended[FAILED if waiting else DONE].append(batch["_id"])
        for state, batches in ended.items():
            for chunk in _chunks(batches):
                await self._batches.update_many({"_id": {"$in": chunk}, "claim": claim, "state": HANDLING},
                                                {"$set": {"state": state, "handled_at": now}})
        return claim, claimed

    async def adopt_legacy(self, now: datetime, *, limit: int = 500) -> int:
        """Move events an earlier version stored one per document, still waiting, into batches (start-up)."""
        moved = 0
        while True:
            old = [doc async for doc in self._legacy.find({"state": HANDLING}, limit=limit)]
            if not old:
                return moved
            docs = [{"_id": doc["_id"], **{f: doc.get(f) for f in EVENT_FIELDS[1:]},
                     "received_at": doc.get("received_at") or now, "attempts": doc.get("attempts", 1)}
                    for doc in old]
            for doc in docs:
                doc["is_redelivery"] = True  # stored apart: some may have been moved by a run that died
            await self.insert_new(docs)
            await self._legacy.delete_many({"_id": {"$in": [doc["_id"] for doc in old]}})
            moved += len(old)

    async def get(self, shop_id: str, webhook_event_id: str) -> Document | None:
        """One event as stored, with its batch's state for it (tests and operators)."""
        key = event_key(shop_id, webhook_event_id)
        batch = await self._batches.find_one({"keys": key})
        if batch is None:
            return None
        return next(view for view in _event_views(batch, await self._records(batch["_id"])) if view["_id"] == key)

    async def events(self, shop_id: str) -> list[Document]:
        """Every stored event of a shop (tests and operators: no index, never on a request path)."""
        views: list[Document] = []
        async for batch in self._batches.find({"events.shop_id": shop_id}):
            records = await self._records(batch["_id"])
            views += [view for view in _event_views(batch, records) if view["shop_id"] == shop_id]
        return views

    async def count(self, shop_id: str, state: str | None = None) -> int:
        """How many events of a shop are stored (in `state`, when given): tests and operators."""
        return sum(1 for view in await self.events(shop_id) if state is None or view["state"] == state)

    async def waiting(self) -> int:
        """Events of stored batches not yet done, over every shop (benchmarks and operators; the state index)."""
        return sum([len(batch["keys"]) async for batch in self._batches.find({"state": HANDLING}, {"keys": 1})])
