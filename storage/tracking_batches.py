"""Stored browser events: persisted before the 204, unique by the client's event ID, processed once after.

The events of the tracking requests that arrive together (one group commit,
`linking.tracking`) are stored as ONE document: on the embedded database a
document write costs about a millisecond whatever its size, so an event costs
a small share of one insert at the acknowledgement instead of its own insert
plus its counters' writes (`storage.bulk.insert_together`; a retried beacon
meeting its stored copy makes the group fall back to one document per event).

Document (`tracking_batches`, `_id` = a random batch ID):
  keys: the events' keys "<shop_id>:<event_id>" (unique multikey index: a
        retried beacon is stored and counted once),
  events: [{key, shop_id, event_id, browser_id, type, url, product_id?, ...,
            received_at, opens?}] - `opens` marks a browser's first event of the
            minute in the process that took it: processing writes that
            browser's own document (created, or `last_seen_at` moved),
  received_at, state ("stored" | "done" | "failed"), claim (token of the
  processor that owns it), lease_until, attempts, processed_at.

Processing (`linking.ingest.process`) adds the view counters and the flows'
intents in one transaction that also marks the batches done - only while the
processor's claim still holds them - so a batch's effects apply exactly once
even if two processors race or one dies mid-way. The process that stored a
batch owns it (leased); if it dies, or its processing fails, the lease runs
out and a recovery sweep claims the batch (a conditional `update_many` per
previous claim, never `find_one_and_update`).

Earlier versions stored one document per event in `events` (no longer written).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from storage.bulk import batch_document, insert_together, new_claim
from storage.database import Database
from storage.durability import ACKNOWLEDGED, UNSYNCED
from storage.keys import shop_scoped
from storage.types import Document, IndexSpec

log = logging.getLogger("linecrm.tracking")

COLLECTION = "tracking_batches"
STORED, DONE, FAILED = "stored", "done", "failed"
LEASE = timedelta(minutes=1)
MAX_ATTEMPTS = 5
ID_CHUNK = 25  # batches per `_id` `$in`: `$in` grows superlinearly on the embedded database
INTERNAL_FIELDS = ("batch", "claim")  # where an event was stored: known to processing, not stored in the event

INDEXES: list[IndexSpec] = [
    # SecantusDB uses an index only when it covers every field of the filter (one range, last).
    IndexSpec(COLLECTION, [("state", ASCENDING), ("lease_until", ASCENDING)], "state_lease"),
    IndexSpec(COLLECTION, [("keys", ASCENDING)], "event_keys", unique=True),
]


class ClaimLost(Exception):
    """Some batch being finished is no longer held by this claim (recovery took it): nothing was applied."""


def event_key(shop_id: str, event_id: str) -> str:
    return shop_scoped(shop_id, event_id)


def chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), ID_CHUNK):
        yield list(items[start:start + ID_CHUNK])


def event_item(shop_id: str, event: dict[str, Any], received_at: datetime) -> Document:
    """One validated event (a `linking.tracking.BrowserEvent` dumped) as stored and processed (pure)."""
    return {"_id": event_key(shop_id, event["event_id"]), "shop_id": shop_id, **event, "received_at": received_at}


def _batch_document(items: Sequence[Document], received_at: datetime, claim: str) -> Document:
    return batch_document(items, received_at, state=STORED, lease=LEASE, claim=claim, event=_stored_event)


def _stored_event(item: Document) -> Document:
    event = {"key": item["_id"]}
    event.update((field, value) for field, value in item.items() if field not in ("_id", *INTERNAL_FIELDS))
    return event


def _by_claim(items: Sequence[Document]) -> dict[str, list[str]]:
    """The items' batches (sorted) under each claim that holds them."""
    claims: dict[str, str] = {item["batch"]: item["claim"] for item in items}
    grouped: dict[str, list[str]] = {}
    for batch in sorted(claims):
        grouped.setdefault(claims[batch], []).append(batch)
    return grouped


def _items(batch: Document) -> list[Document]:
    """A stored batch's events as processing sees them (the inverse of `_stored_event`)."""
    items: list[Document] = []
    for event in batch["events"]:
        item = {"_id": event["key"], **{field: value for field, value in event.items() if field != "key"}}
        item.update(batch=batch["_id"], claim=batch["claim"])
        items.append(item)
    return items


class TrackingBatchRepository:
    def __init__(self, database: Database) -> None:
        self._batches = database[COLLECTION]
        self._acknowledging = self._batches.with_options(write_concern=ACKNOWLEDGED)
        # Processing's writes need no sync of their own: lost with an unsynced end of the log, the batch is
        # still "stored" and is processed again, its counters and intents with it (one transaction).
        self._settling = self._batches.with_options(write_concern=UNSYNCED)
        self.holder = new_claim()  # the claim of every batch this repository stores (see `batch_document`)

    async def store(self, items: Sequence[Document], received_at: datetime) -> list[bool]:
        """Store events durably (`ACKNOWLEDGED`), leased to this caller; per item: was it new?"""
        return await insert_together(self._acknowledging, items, lambda group: _batch_document(group, received_at,
                                                                                             self.holder))

    async def finish(self, items: Sequence[Document], now: datetime, session: AsyncClientSession) -> None:
        """Mark the items' batches done, inside the transaction that applies their effects.

        Raises `ClaimLost` (the caller aborts the transaction) when any of them is no longer held by the
        claim that stored or recovered it: its new holder applies it instead.
        """
        for claim, batches in _by_claim(items).items():  # one claim, usually: its holder stored them all
            for chunk in chunks(batches):
                result = await self._settling.update_many(
                    {"_id": {"$in": chunk}, "claim": claim, "state": STORED},
                    {"$set": {"state": DONE, "processed_at": now}}, session=session)
                if result.matched_count != len(chunk):
                    raise ClaimLost(f"{len(chunk) - result.matched_count} batch(es) taken over")

    async def release(self, items: Sequence[Document], now: datetime) -> None:
        """Events this process stored but will not process (failed, or stopping): recovery may take them now."""
        for claim, batches in _by_claim(items).items():
            for chunk in chunks(batches):
                await self._settling.update_many({"_id": {"$in": chunk}, "claim": claim, "state": STORED},
                                                 {"$set": {"lease_until": now}})

    async def claim_expired(self, now: datetime, *, limit: int = 20) -> list[Document]:
        """Claim stored batches whose lease ran out, oldest first; their events (as `store` got them).

        One indexed select, then per previous claim a conditional `update_many` (still that claim, still
        stored), read back by `_id` and kept where our claim won. A batch tried `MAX_ATTEMPTS` times is
        marked failed and logged (its events stay stored; its counters and intents were never applied).
        """
        seen: dict[str, list[str]] = {}
        async for doc in self._batches.find(
            {"state": STORED, "lease_until": {"$lte": now}}, {"_id": 1, "claim": 1}, limit=limit
        ).sort("lease_until", ASCENDING):
            seen.setdefault(doc.get("claim") or "", []).append(doc["_id"])
        if not seen:
            return []
        claim = new_claim()
        for previous, ids in seen.items():
            for chunk in chunks(ids):
                await self._settling.update_many(
                    {"_id": {"$in": chunk}, "claim": previous, "state": STORED},
                    {"$set": {"claim": claim, "lease_until": now + LEASE}, "$inc": {"attempts": 1}})
        claimed: list[Document] = []
        failed: list[str] = []
        for chunk in chunks([batch for ids in seen.values() for batch in ids]):
            async for batch in self._batches.find({"_id": {"$in": chunk}, "claim": claim, "state": STORED}):
                if batch.get("attempts", 1) > MAX_ATTEMPTS:
                    failed.append(batch["_id"])
                else:
                    claimed.extend(_items(batch))
        if failed:
            log.error("%d browser-event batch(es) failed %d processing attempts; left unprocessed", len(failed),
                      MAX_ATTEMPTS)
        for chunk in chunks(failed):
            await self._settling.update_many({"_id": {"$in": chunk}, "claim": claim, "state": STORED},
                                              {"$set": {"state": FAILED, "processed_at": now}})
        return claimed

    async def events(self, shop_id: str) -> list[Document]:
        """Every stored event of a shop, with its batch's state (tests and operators: no index)."""
        found: list[Document] = []
        async for batch in self._batches.find({"events.shop_id": shop_id}):
            for event in batch["events"]:
                if event["shop_id"] == shop_id:
                    found.append({**event, "state": batch["state"]})
        return found

    async def get(self, shop_id: str, event_id: str) -> Document | None:
        """One stored event, with its batch's state (the `event_keys` index)."""
        key = event_key(shop_id, event_id)
        batch = await self._batches.find_one({"keys": key})
        if batch is None:
            return None
        return next({**event, "state": batch["state"]} for event in batch["events"] if event["key"] == key)

    async def stored(self) -> tuple[int, int]:
        """(events, of them not yet processed) over every shop (benchmarks and operators)."""
        total = waiting = 0
        async for batch in self._batches.find({}, {"keys": 1, "state": 1}):
            total += len(batch["keys"])
            waiting += len(batch["keys"]) if batch["state"] == STORED else 0
        return total, waiting
