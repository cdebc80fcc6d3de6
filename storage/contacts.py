"""`contacts`: one delivery-state document per customer, shared by every per-customer flow, with leased batch claims.

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
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.bulk import only_duplicates
from storage.database import Database, Document, IndexSpec, find_by_ids
from storage.keys import customer_key

CONTACTS = "contacts"
NEVER = datetime(9999, 12, 31, tzinfo=UTC)  # "nothing due": sorts after every real time, so `$min` works
DUE_INDEX = [("next_due_at", ASCENDING), ("_id", ASCENDING)]
# The one secondary index: every claim and settle rewrites it (each extra index costs every write).
DUE = "contact_due"
INDEXES: list[IndexSpec] = [IndexSpec(CONTACTS, DUE_INDEX, DUE)]
BY_ID = "_id_"
SENT_KEEP = 60  # frequency caps count at most this many sends in a week
LOG_KEEP = 30


@dataclass(frozen=True)
class DueRef:
    """A due contact as the due stream sees it."""

    id: str
    shop_id: str
    due: datetime


@dataclass(frozen=True)
class Lookup:
    """Another collection joined to a batch by the contact's `_id` (one `$lookup`, no extra round trip)."""

    collection: str
    as_field: str
    fields: Mapping[str, int] | None = None  # projection; None: the whole document


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

    # --- ingest side (web processes and listeners) ---

    async def put_flow_state(self, shop_id: str, line_user_id: str, key: str, fields: Mapping[str, Any], *,
                             due_at: datetime | None, when: Mapping[str, Any] | None = None,
                             create: bool = True) -> bool:
        """Merge `fields` into the contact's `flows.<key>` if `when` holds (creating the contact if `create`).

        `when` is a filter on the current document (e.g. `{"flows.reminders.status": {"$ne": "active"}}`);
        when it does not hold for an existing contact nothing changes and False is returned.
        """
        return await self.put_flow_states(shop_id, line_user_id, {key: fields}, due_at=due_at, when=when,
                                          create=create)

    async def put_flow_states(self, shop_id: str, line_user_id: str, states: Mapping[str, Mapping[str, Any]], *,
                              due_at: datetime | None, when: Mapping[str, Any] | None = None,
                              create: bool = True) -> bool:
        """`put_flow_state` for several flows' sub-states in one write (`states`: key → fields)."""
        query: dict[str, Any] = {"_id": customer_key(shop_id, line_user_id), **(when or {})}
        try:
            result = await self._contacts.update_one(
                query, states_pipeline(shop_id, line_user_id, states, due_at), upsert=create, hint=BY_ID)
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

    async def get(self, shop_id: str, line_user_id: str) -> Document | None:
        return await self._contacts.find_one({"_id": customer_key(shop_id, line_user_id)})

    async def get_many(self, ids: Sequence[str]) -> dict[str, Document]:
        return {doc["_id"]: doc for doc in await find_by_ids(self._contacts, ids)}

    # --- engine side (workers) ---

    def due_cursor(self, now: datetime, shop_id: str | None, size: int) -> AsyncCursor[Document]:
        """Every contact due at `now` in (next_due_at, _id) order through the due index (`--shop` filters on top)."""
        query: dict[str, Any] = {"next_due_at": {"$lte": now}}
        if shop_id is not None:
            query["shop_id"] = shop_id
        return self._contacts.find(query, {"_id": 1, "shop_id": 1, "next_due_at": 1}).sort(
            DUE_INDEX).hint(DUE).batch_size(size)

    async def due_stream(self, now: datetime, shop_id: str | None, size: int) -> AsyncIterator[list[DueRef]]:
        """The due set in lists of `size`: one cursor for the whole run (a `limit` per batch re-reads the set)."""
        batch: list[DueRef] = []
        async for doc in self.due_cursor(now, shop_id, size):
            batch.append(DueRef(doc["_id"], doc.get("shop_id", ""), doc["next_due_at"]))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    async def claim(self, refs: Sequence[DueRef], token: str, lease_at: datetime, shop_id: str | None) -> None:
        """Take the contacts of this slice of the due order that are still due: their `next_due_at` becomes
        `lease_at` (unique to the token), so no other worker sees them until the lease runs out.

        The slice is a range of the due index, (first.due, first.id) ≤ (due, id) ≤ (last.due, last.id), so
        the claim is at most three indexed `update_many`s whatever the batch size (no `_id` list).
        """
        if not refs:
            return
        first, last = refs[0], refs[-1]
        grab = [{"$set": {"prev_claim": "$claim", "claim": {"$literal": token},
                          "next_due_at": {"$literal": lease_at}}}]
        scope: dict[str, Any] = {} if shop_id is None else {"shop_id": shop_id}
        if first.due == last.due:
            ranges = [{"next_due_at": first.due, "_id": {"$gte": first.id, "$lte": last.id}}]
        else:
            ranges = [{"next_due_at": first.due, "_id": {"$gte": first.id}},
                      {"next_due_at": {"$gt": first.due, "$lt": last.due}},
                      {"next_due_at": last.due, "_id": {"$lte": last.id}}]
        for query in ranges:
            await self._contacts.update_many({**query, **scope}, grab, hint=DUE)

    async def claimed(self, lease_at: datetime, token: str, lookups: Sequence[Lookup]) -> list[Document]:
        """The contacts this token holds, each joined with its customer (`customer`) and the flows' lookups."""
        docs = await self._joined({"next_due_at": lease_at}, lookups, hint=DUE)
        return [doc for doc in docs if doc.get("claim") == token]  # not another batch with the same moment

    async def joined(self, shop_id: str, line_user_id: str, lookups: Sequence[Lookup]) -> Document | None:
        """One contact as the engine reads it (the dry run); None when there is none."""
        docs = await self._joined({"_id": customer_key(shop_id, line_user_id)}, lookups, hint=BY_ID)
        return docs[0] if docs else None

    async def _joined(self, match: dict[str, Any], lookups: Sequence[Lookup], *, hint: Any) -> list[Document]:
        joins = (Lookup("customers", "customer"), *lookups)
        pipeline: list[dict[str, Any]] = [{"$match": match}]
        for lookup in joins:
            pipeline.append({"$lookup": {"from": lookup.collection, "localField": "_id", "foreignField": "_id",
                                         "as": lookup.as_field}})
        # One batch of any size: a first batch of 101 would cost one more round trip per 1,000 contacts.
        docs = [doc async for doc in await self._contacts.aggregate(pipeline, hint=hint, batchSize=100_000)]
        for doc in docs:
            for lookup in joins:
                joined = doc.get(lookup.as_field) or []
                doc[lookup.as_field] = joined[0] if joined else None
        return docs

    async def settle(self, settles: Sequence[Settle]) -> list[str]:
        """Write each contact's result; returns the ids whose claim or version changed meanwhile."""
        if not settles:
            return []
        ops = [UpdateOne({"_id": s.contact_id, "claim": s.token, "v": s.version}, s.update, hint=BY_ID)
               for s in settles]
        result = await self._contacts.bulk_write(ops, ordered=False)
        if result.matched_count == len(ops):
            return []
        fresh = await self.get_many([s.contact_id for s in settles])
        return [s.contact_id for s in settles
                if (doc := fresh.get(s.contact_id)) is not None and doc.get("claim") == s.token
                and doc.get("v", 0) != s.version]

    async def release(self, contact_ids: Sequence[str], token: str, due: Mapping[str, datetime]) -> None:
        """Give contacts back unchanged (e.g. their shop is paused): free the claim, restore the due time."""
        ops = [UpdateOne({"_id": cid, "claim": token}, {"$set": {"claim": None, "prev_claim": None,
                                                                "next_due_at": due.get(cid, NEVER)}}, hint=BY_ID)
               for cid in contact_ids]
        if ops:
            await self._contacts.bulk_write(ops, ordered=False)
