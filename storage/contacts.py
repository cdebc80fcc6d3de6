"""`contacts`: one delivery-state document per customer, shared by every per-customer flow, with leased batch claims
(the leased-collection mechanics — due stream, range claim, read-back, conditional settle — are `storage.leases`).

Document (`_id` = customer key "<shop_id>:<line_user_id>"):
  shop_id, line_user_id,
  flows: {state key: {due_at: UTC | None, ...the flow's own fields}} — e.g. "reminders" (the browse
         cycle), "cart", "seq:<sequence id>", "points_earned" / "points_monthly" / "points_expiry";
  next_due_at: when the engine must look at the contact next — the earliest `due_at` of its flows, `NEVER`
         when none is due, and the lease's expiry while a worker holds it (indexed with `_id`);
  claim: the holding batch's token (None when free); prev_claim: the token of a lease that ran out;
  v: bumped by every ingest write, so a worker's settle notices a change made under its claim;
  sent: [{at, flow}] the latest sends of every flow (frequency caps across flows);
  log: [{flow, key, step, status, reason, at, sent_at, group, cycle}] the latest records (attribution).

Why one document per customer for all flows: the frequency cap spans flows, so
the decision for a customer's reminder, cart and sequence messages must see the
same sends and land in one write — a message costs the claim (one `update_many`
per batch) and one settle update, nothing else per customer. It lives apart from
`customers`, whose many admin-filter indexes make every write ~3× dearer.

Concurrency: ingest writes (web processes) only touch `flows.*`, `v` and — while
nobody holds the claim — lower `next_due_at`; a claimed contact never becomes due
before its lease ends, so two workers never hold one contact. A settle applies
only while its token still holds the claim and `v` is unchanged; otherwise the
engine re-reads the contact and settles again against the fresh state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.bulk import only_duplicates
from storage.database import Database, Document, IndexSpec, find_by_ids
from storage.keys import customer_key
from storage.leases import BY_ID, DUE_INDEX, NEVER, Conditional, DueRef, Lease, LeasedCollection

CONTACTS = "contacts"
# The one secondary index: every claim and settle rewrites it (each extra index costs every write).
DUE = "contact_due"
INDEXES: list[IndexSpec] = [IndexSpec(CONTACTS, DUE_INDEX, DUE)]
# NEVER and DueRef are re-exported: flows compare due times with NEVER, tests read the due stream.
__all__ = ["CONTACTS", "DUE", "INDEXES", "LOG_KEEP", "NEVER", "SENT_KEEP", "ContactRepository", "DueRef", "Lookup",
           "Settle", "ingest_pipeline", "states_pipeline"]
SENT_KEEP = 60  # frequency caps count at most this many sends in a week
LOG_KEEP = 30


@dataclass(frozen=True)
class Lookup:
    """Another collection joined to a batch by the contact's `_id` (one `$lookup`, no extra round trip)."""

    collection: str
    as_field: str
    fields: Mapping[str, int] | None = None  # projection; None: the whole document


def _merge_state(key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Pipeline expression: `flows` with these fields merged into `flows.<key>` (other flows untouched)."""
    return _merge_states({key: fields})


def _merge_states(states: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Pipeline expression: `flows` with each key's fields merged into `flows.<key>` (other flows untouched)."""
    return {"$mergeObjects": [
        {"$ifNull": ["$flows", {}]},
        {key: {"$mergeObjects": [{"$ifNull": [f"$flows.{key}", {}]}, {"$literal": dict(fields)}]}
         for key, fields in states.items()},
    ]}


def ingest_pipeline(shop_id: str, line_user_id: str, key: str, fields: Mapping[str, Any],
                    due_at: datetime | None) -> list[dict[str, Any]]:
    """The update an ingest write makes: merge the flow's fields, bump `v`, and — only when no worker
    holds the contact — move `next_due_at` earlier to `due_at` (a later due time is found by the engine)."""
    return states_pipeline(shop_id, line_user_id, {key: fields}, due_at)


def states_pipeline(shop_id: str, line_user_id: str, states: Mapping[str, Mapping[str, Any]],
                    due_at: datetime | None) -> list[dict[str, Any]]:
    """`ingest_pipeline` for several flows' sub-states in one write."""
    due = due_at or NEVER
    current = {"$ifNull": ["$next_due_at", NEVER]}
    return [{"$set": {
        "shop_id": {"$ifNull": ["$shop_id", {"$literal": shop_id}]},
        "line_user_id": {"$ifNull": ["$line_user_id", {"$literal": line_user_id}]},
        "flows": _merge_states(states),
        "v": {"$add": [{"$ifNull": ["$v", 0]}, 1]},
        "next_due_at": {"$cond": [{"$eq": [{"$ifNull": ["$claim", None]}, None]},
                                  {"$min": [current, {"$literal": due}]}, current]},
    }}]


@dataclass(frozen=True)
class Settle:
    """One contact's write after a batch: conditional on the claim and the version the worker read."""

    contact_id: str
    token: str
    version: int
    update: dict[str, Any]


class ContactRepository:
    def __init__(self, database: Database) -> None:
        self._contacts = database[CONTACTS]
        self._leased = LeasedCollection(self._contacts, DUE)

    # --- ingest side (web processes and listeners) ---

    async def put_flow_state(self, shop_id: str, line_user_id: str, key: str, fields: Mapping[str, Any], *,
                             due_at: datetime | None, when: Mapping[str, Any] | None = None,
                             create: bool = True) -> bool:
        """Merge `fields` and `due_at` into the contact's `flows.<key>` if `when` holds (creating the contact if
        `create`); `due_at` is the sub-state's new due time (None: nothing due).

        `when` is a filter on the current document (e.g. `{"flows.reminders.status": {"$ne": "active"}}`);
        when it does not hold for an existing contact nothing changes and False is returned.
        """
        return await self.put_flow_states(shop_id, line_user_id, {key: fields}, due_at=due_at, when=when,
                                          create=create)

    async def put_flow_states(self, shop_id: str, line_user_id: str, states: Mapping[str, Mapping[str, Any]], *,
                              due_at: datetime | None, when: Mapping[str, Any] | None = None,
                              create: bool = True) -> bool:
        """`put_flow_state` for several flows' sub-states in one write (`states`: key → fields; each sub-state
        takes its own `due_at` from its fields when given there, else `due_at`)."""
        query: dict[str, Any] = {"_id": customer_key(shop_id, line_user_id), **(when or {})}
        states = {key: {"due_at": due_at, **fields} for key, fields in states.items()}
        dues = [state["due_at"] for state in states.values() if state["due_at"] is not None]
        try:
            result = await self._contacts.update_one(
                query, states_pipeline(shop_id, line_user_id, states, min(dues) if dues else None), upsert=create,
                hint=BY_ID)
        except DuplicateKeyError:  # the contact exists but `when` does not hold
            return False
        return result.modified_count == 1 or result.upserted_id is not None

    async def put_flow_state_many(self, shop_id: str, line_user_ids: Sequence[str], key: str,
                                  fields: Mapping[str, Any], *, due_at: datetime | None,
                                  when: Mapping[str, Any]) -> int:
        """`put_flow_state` for many customers of a shop (`ID_CHUNK` at a time is cheapest): one `update_many`
        by `_id $in`, so a shop-wide change (e.g. a monthly notice) costs no round trip per customer. A
        contact that does not exist yet is created (one read and one bulk upsert, only when some are missing).
        Returns how many contacts changed."""
        keys = [customer_key(shop_id, user) for user in line_user_ids]
        fields = {**fields, "due_at": due_at}
        result = await self._contacts.update_many({"_id": {"$in": keys}, **when},
                                                  states_pipeline(shop_id, "", {key: fields}, due_at))
        changed = result.modified_count
        if result.matched_count == len(keys):
            return changed
        existing = {doc["_id"] async for doc in self._contacts.find({"_id": {"$in": keys}}, {"_id": 1})}
        missing = [UpdateOne({"_id": k, **when}, states_pipeline(shop_id, user, {key: fields}, due_at), upsert=True)
                   for k, user in zip(keys, line_user_ids, strict=True) if k not in existing]
        if missing:
            try:
                created = await self._contacts.bulk_write(missing, ordered=False)
                changed += created.upserted_count + created.modified_count
            except BulkWriteError as exc:  # created meanwhile and `when` no longer holds: nothing to do there
                if not only_duplicates(exc):
                    raise
                changed += int(exc.details.get("nUpserted") or 0) + int(exc.details.get("nModified") or 0)
        return changed

    async def wake_flow(self, shop_id: str, key: str, now: datetime, when: Mapping[str, Any]) -> int:
        """Make every such sub-state of the shop due now (e.g. a definition edit shortened their wait): the
        engine re-plans them at once. Scans the shop's contacts (no index names a sub-state), so it is for
        rare admin edits only, never for ingest. Returns how many contacts were woken."""
        query = {"shop_id": shop_id, f"flows.{key}.due_at": {"$gt": now},
                 **{f"flows.{key}.{name}": value for name, value in when.items()}}
        current = {"$ifNull": ["$next_due_at", NEVER]}
        result = await self._contacts.update_many(query, [{"$set": {
            "flows": _merge_state(key, {"due_at": now}),
            "v": {"$add": [{"$ifNull": ["$v", 0]}, 1]},
            "next_due_at": {"$cond": [{"$eq": [{"$ifNull": ["$claim", None]}, None]},
                                      {"$min": [current, {"$literal": now}]}, current]},
        }}])
        return result.modified_count

    async def get(self, shop_id: str, line_user_id: str) -> Document | None:
        return await self._contacts.find_one({"_id": customer_key(shop_id, line_user_id)})

    async def get_many(self, ids: Sequence[str]) -> dict[str, Document]:
        return {doc["_id"]: doc for doc in await find_by_ids(self._contacts, ids)}

    # --- engine side (workers): the leased-collection mechanics (`storage.leases`) ---

    def due_cursor(self, now: datetime, size: int) -> AsyncCursor[Document]:
        """Every contact due at `now` in (next_due_at, _id) order through the due index."""
        return self._leased.due_cursor(now, size)

    def due_stream(self, now: datetime, shop_id: str | None, size: int) -> AsyncIterator[list[DueRef]]:
        """The due set in lists of `size`: one cursor for the whole run."""
        return self._leased.due_stream(now, shop_id, size)

    async def claim(self, refs: Sequence[DueRef], token: str, lease_at: datetime, shop_id: str | None) -> None:
        """Take the contacts of this slice of the due order that are still due (a range claim)."""
        await self._leased.claim(refs, Lease(token, lease_at), shop_id)

    async def claimed(self, lease_at: datetime, token: str, lookups: Sequence[Lookup]) -> list[Document]:
        """The contacts this token holds, each joined with its customer (`customer`) and the flows' lookups."""
        joins = (Lookup("customers", "customer"), *lookups)
        return _unwrap(await self._leased.claimed(Lease(token, lease_at), _lookup_stages(joins)), joins)

    async def joined(self, shop_id: str, line_user_id: str, lookups: Sequence[Lookup]) -> Document | None:
        """One contact as the engine reads it (the dry run); None when there is none."""
        joins = (Lookup("customers", "customer"), *lookups)
        docs = _unwrap(await self._leased.aggregate({"_id": customer_key(shop_id, line_user_id)},
                                                    _lookup_stages(joins)), joins)
        return docs[0] if docs else None

    async def settle(self, settles: Sequence[Settle]) -> list[str]:
        """Write each contact's result; returns the ids whose version changed meanwhile (still held by us)."""
        versions = {s.contact_id: s.version for s in settles}
        fresh = await self._leased.settle([Conditional(s.contact_id, s.token, s.update, {"v": s.version})
                                           for s in settles])
        return [s.contact_id for s in settles
                if (doc := fresh.get(s.contact_id)) is not None and doc.get("v", 0) != versions[s.contact_id]]

    async def release(self, contact_ids: Sequence[str], token: str, due: Mapping[str, datetime]) -> None:
        """Give contacts back unchanged (e.g. their shop is paused): free the claim, restore the due time."""
        await self._leased.release(contact_ids, token, due)


def _lookup_stages(joins: Sequence[Lookup]) -> list[dict[str, Any]]:
    return [{"$lookup": {"from": lookup.collection, "localField": "_id", "foreignField": "_id",
                         "as": lookup.as_field}} for lookup in joins]


def _unwrap(docs: list[Document], joins: Sequence[Lookup]) -> list[Document]:
    for doc in docs:
        for lookup in joins:
            joined = doc.get(lookup.as_field) or []
            doc[lookup.as_field] = joined[0] if joined else None
    return docs
