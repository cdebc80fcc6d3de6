"""The browse-reminder scheduling state (`reminder_state`, one lean document per customer) and its leased claims.

Document (`_id` = customer key "<shop_id>:<line_user_id>"): shop_id, line_user_id,
cycle_id, cycle_started_at, steps_sent [int], next_step (0-based),
next_due_at (UTC | None; indexed), status (active|done|stopped|disabled),
attempts, claim (token | None), lease_until (wall-clock UTC | None), updated_at,
last_sent_at (latest reminder push, kept across cycles: lets an order skip
attribution without a query), sends_unsettled (True when a cycle was stopped
while claimed: a push may have been recorded without `last_sent_at`).

It lives apart from `customers` because every claim and settle writes it, and
`customers` carries many indexes for the admin filters (each update ~1.1 ms on
the embedded database, ~0.3 ms here with only the due indexes). Readers that
want the customer as one document (the planner, the dry run) get the customer's
fields with this state under `reminder` (`with_state`).

Every change is a single conditional `update_one`/`update_many`, so web
processes (views, links, orders) and any number of workers can race safely:
a worker's result only lands while it still holds its claim on the same cycle.

Costs on the embedded database (SecantusDB 0.7) shape the queries: a `find`
with `limit` still materialises every match, so the due set is read by one
streaming cursor per run, not one query per batch; an `_id: {$in}` list costs
more than linearly in its length, so batch reads and claims go in concurrent
chunks of `CHUNK` ids; a hint by name on `_id` with extra predicates is slow,
so read-backs filter the claim token in Python.

Also `reminder_profiles` (`ReminderProfileRepository`): what the engine needs
about each customer's views and purchases, kept at ingest (see
`flows.reminders.profile` for the document).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import DuplicateKeyError

from storage.customers import customer_key
from storage.database import Database, Document, IndexSpec

STATE = "reminder_state"
# The one secondary index: every claim and settle rewrites the document, and each
# index costs ~0.1-0.2 ms per write on the embedded database. Due queries name it
# (`hint`); a shop-scoped run (an operator's `run-once --shop`) filters the shop
# on top of it instead of paying for a (shop_id, next_due_at) index on every write.
DUE_INDEX = [("next_due_at", ASCENDING)]
INDEXES: list[IndexSpec] = ([IndexSpec(STATE, DUE_INDEX, "reminder_due")])

BY_ID = "_id_"
CHUNK = 50  # ids per `$in` (see the module docstring)
CUSTOMER_FIELDS = {
    "shop_id": 1, "line_user_id": 1, "friend": 1, "blocked": 1, "opted_out": 1, "linked": 1, "totals": 1,
}


async def find_by_ids(collection: AsyncCollection[Document], ids: Sequence[str],
                     projection: Mapping[str, Any] | None = None) -> list[Document]:
    """Documents by `_id`, in concurrent chunks (one round trip's latency, not one per chunk)."""
    unique = list(dict.fromkeys(ids))
    chunks = [unique[i:i + CHUNK] for i in range(0, len(unique), CHUNK)]

    async def read(chunk: list[str]) -> list[Document]:
        return [doc async for doc in collection.find({"_id": {"$in": chunk}}, projection)]

    return [doc for part in await asyncio.gather(*(read(chunk) for chunk in chunks)) for doc in part]


def with_state(customer: Document | None, state: Document) -> Document:
    """The customer as the planner reads it: its fields plus this state under `reminder`.

    A state whose customer is gone keeps its shop and user and is marked
    `customer_missing`, so the planner ends the cycle instead of sending.
    """
    reminder = {k: v for k, v in state.items() if k not in ("_id", "shop_id", "line_user_id")}
    if customer is None:
        return {"_id": state["_id"], "shop_id": state.get("shop_id", ""), "line_user_id": state.get("line_user_id", ""),
                "customer_missing": True, "reminder": reminder}
    return {**customer, "reminder": reminder}


@dataclass(frozen=True)
class DueRef:
    """A due customer as the due stream sees it (enough to skip paused shops and live leases)."""

    id: str
    shop_id: str
    lease_until: datetime | None


@dataclass(frozen=True)
class Settlement:
    """A worker's result for one claimed customer: the fields to set, if it still holds the claim."""

    customer_id: str
    token: str
    cycle_id: str | None
    fields: dict[str, Any]
    sent_at: datetime | None = None  # a push went out (or was found recorded): moves `last_sent_at`


def cycle_id_for(anchor: datetime) -> str:
    """Deterministic from the cycle's first view, so two processes starting it agree."""
    return f"c{int(anchor.timestamp() * 1000)}"


def new_cycle(anchor: datetime, first_due_at: datetime | None, now: datetime) -> dict[str, Any]:
    return {
        "cycle_id": cycle_id_for(anchor),
        "cycle_started_at": anchor,
        "steps_sent": [],
        "next_step": 0,
        "next_due_at": first_due_at,
        "status": "active",
        "attempts": 0,
        "claim": None,
        "lease_until": None,
        "updated_at": now,
    }


class ReminderStateRepository:
    def __init__(self, database: Database) -> None:
        self._state = database[STATE]
        self._customers = database["customers"]

    async def start_cycle_if_idle(self, shop_id: str, line_user_id: str, cycle: dict[str, Any]) -> bool:
        """Start a cycle unless one is running (a view during a cycle does not move its anchor).

        An upsert conditional on "not active": when a cycle runs, the insert
        collides on `_id` and nothing changes. Fields outside the cycle
        (`last_sent_at`, `sends_unsettled`) survive a new cycle.
        """
        try:
            result = await self._state.update_one(
                {"_id": customer_key(shop_id, line_user_id), "status": {"$ne": "active"}},
                {"$set": cycle, "$setOnInsert": {"shop_id": shop_id, "line_user_id": line_user_id}},
                upsert=True, hint=BY_ID,
            )
        except DuplicateKeyError:
            return False
        return result.modified_count == 1 or result.upserted_id is not None

    async def reanchor_unsent(self, shop_id: str, line_user_id: str, cycle: dict[str, Any]) -> bool:
        """Move a running cycle to an earlier first view, only while nothing was sent and no worker holds it."""
        result = await self._state.update_one(
            {
                "_id": customer_key(shop_id, line_user_id),
                "status": "active",
                "steps_sent": {"$size": 0},
                "claim": None,
                "cycle_started_at": {"$gt": cycle["cycle_started_at"]},
            },
            {"$set": cycle},
            hint=BY_ID,
        )
        return result.modified_count == 1

    async def stop_cycle(self, shop_id: str, line_user_id: str, after: datetime, now: datetime,
                         *, claimed: bool = False) -> bool:
        """A purchase at `after` stops a cycle that started before it (dropping any claim).

        `claimed`: the caller saw a claim on it, so a push of that worker may be
        recorded without ever reaching `last_sent_at`; remembered for attribution.
        """
        fields: dict[str, Any] = {"status": "stopped", "next_due_at": None, "claim": None, "lease_until": None,
                                  "updated_at": now}
        if claimed:
            fields["sends_unsettled"] = True
        result = await self._state.update_one(
            {"_id": customer_key(shop_id, line_user_id), "status": "active", "cycle_started_at": {"$lte": after}},
            {"$set": fields},
            hint=BY_ID,
        )
        return result.modified_count == 1

    async def get_state(self, shop_id: str, line_user_id: str) -> Document | None:
        """The state document alone (one `_id` read): what the ingest listeners need."""
        return await self._state.find_one({"_id": customer_key(shop_id, line_user_id)})

    async def get(self, shop_id: str, line_user_id: str) -> Document | None:
        """The customer with its state under `reminder` (`{}` without one); None when no such customer."""
        key = customer_key(shop_id, line_user_id)
        customer, state = await asyncio.gather(self._customers.find_one({"_id": key}, CUSTOMER_FIELDS),
                                               self._state.find_one({"_id": key}))
        if customer is None:
            return None
        return with_state(customer, state) if state is not None else {**customer, "reminder": {}}

    @staticmethod
    def _claimable(now: datetime, wall_now: datetime) -> dict[str, Any]:
        """Due at `now` and not leased (never leased, or the lease ran out by the wall clock)."""
        return {"next_due_at": {"$lte": now}, "lease_until": {"$not": {"$gt": wall_now}}}

    async def due_stream(self, now: datetime, shop_id: str | None, size: int) -> AsyncIterator[list[DueRef]]:
        """Every customer due at `now`, oldest first, in lists of `size`: one cursor for the whole run.

        The filter is the index's field (plus the shop, on top of the index), so
        the planner uses it; leases and paused shops are filtered by the caller.
        The claim re-checks everything, so a stale entry costs a skipped id, never a send.
        """
        batch: list[DueRef] = []
        async for doc in self.due_stream_cursor(now, shop_id, size):
            batch.append(DueRef(doc["_id"], doc.get("shop_id", ""), doc.get("lease_until")))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def due_stream_cursor(self, now: datetime, shop_id: str | None, size: int) -> AsyncCursor[Document]:
        query: dict[str, Any] = {"next_due_at": {"$lte": now}}
        if shop_id is not None:
            query["shop_id"] = shop_id
        return self._state.find(
            query, {"_id": 1, "shop_id": 1, "lease_until": 1}
        ).sort("next_due_at", ASCENDING).hint(DUE_INDEX).batch_size(size)

    async def claim(self, ids: Sequence[str], token: str, now: datetime, wall_now: datetime,
                    lease_until: datetime) -> list[Document]:
        """Atomically take those still due and unclaimed; read back what this token holds.

        Returns customers with their state under `reminder` (`with_state`); the
        customers are read (never written) alongside the state read-back.
        """
        if not ids:
            return []
        due = self._claimable(now, wall_now)
        unique = list(dict.fromkeys(ids))
        await asyncio.gather(*(
            self._state.update_many(
                {"_id": {"$in": unique[i:i + CHUNK]}, **due},
                {"$set": {"claim": token, "lease_until": lease_until}},
            )
            for i in range(0, len(unique), CHUNK)
        ))
        states, customers = await asyncio.gather(find_by_ids(self._state, unique),
                                                 find_by_ids(self._customers, unique, CUSTOMER_FIELDS))
        by_id = {doc["_id"]: doc for doc in customers}
        return [with_state(by_id.get(state["_id"]), state) for state in states if state.get("claim") == token]

    async def settle(self, results: Sequence[Settlement], now: datetime) -> None:
        """Apply each result and release the claims, conditional on still holding the claim on the same cycle.

        An order that stopped the cycle meanwhile (it drops the claim), or a
        worker that took over an expired lease, wins. A push that went out is
        still remembered (`$max` of `last_sent_at`, unconditional, only for
        the results that lost their claim: rare, so usually no second write).
        """
        ops = []
        for result in results:
            update: dict[str, Any] = {"$set": {**result.fields, "claim": None, "lease_until": None,
                                               "updated_at": now}}
            if result.sent_at is not None:
                update["$max"] = {"last_sent_at": result.sent_at}
            ops.append(UpdateOne({"_id": result.customer_id, "claim": result.token, "cycle_id": result.cycle_id},
                                 update, hint=BY_ID))
        if not ops:
            return
        outcome = await self._state.bulk_write(ops, ordered=False)
        sent = [r for r in results if r.sent_at is not None]
        if sent and outcome.matched_count < len(ops):
            await self._state.bulk_write([UpdateOne({"_id": r.customer_id}, {"$max": {"last_sent_at": r.sent_at}},
                                                    hint=BY_ID) for r in sent], ordered=False)


class ReminderProfileRepository:
    """`reminder_profiles`: one document per customer, written by the ingest listeners, read by `_id`.

    Map keys arrive escaped (`flows.reminders.profile.field_key`); every
    write sets values derived from the source events, so a replay is harmless.
    """

    def __init__(self, database: Database) -> None:
        self._profiles = database["reminder_profiles"]

    async def get(self, shop_id: str, line_user_id: str) -> Document | None:
        return await self._profiles.find_one({"_id": customer_key(shop_id, line_user_id)})

    async def get_many(self, ids: Sequence[str]) -> dict[str, Document]:
        """Profiles by customer key (`_id`), for a batch."""
        return {doc["_id"]: doc for doc in await find_by_ids(self._profiles, ids)}

    async def update_views(self, shop_id: str, line_user_id: str, entries: Mapping[str, Mapping[str, Any] | None],
                           drop: Sequence[str], now: datetime) -> None:
        """Set these view entries (None removes one) and drop the keys that fell out of the bound."""
        sets = {f"views.{key}": entry for key, entry in entries.items() if entry is not None}
        unsets = {f"views.{key}": "" for key, entry in entries.items() if entry is None}
        unsets.update({f"views.{key}": "" for key in drop if key not in entries})
        await self._write(shop_id, line_user_id, sets, unsets, now)

    async def replace_views(self, shop_id: str, line_user_id: str, views: Mapping[str, Any], now: datetime) -> None:
        await self._write(shop_id, line_user_id, {"views": dict(views)}, {}, now)

    async def add_bought(self, shop_id: str, line_user_id: str, bought: Mapping[str, datetime], now: datetime) -> None:
        """A paid order: each product's latest purchase moves forward (`$max`, so replays change nothing)."""
        if not bought:
            return
        key = customer_key(shop_id, line_user_id)
        await self._profiles.update_one(
            {"_id": key},
            {"$max": {f"bought.{k}": at for k, at in bought.items()},
             "$set": {"updated_at": now}, "$setOnInsert": {"shop_id": shop_id, "line_user_id": line_user_id}},
            upsert=True,
        )

    async def set_bought(self, shop_id: str, line_user_id: str, bought: Mapping[str, datetime | None],
                         now: datetime) -> None:
        """Recomputed purchases of some products (None: no paid order contains it any more)."""
        sets = {f"bought.{k}": at for k, at in bought.items() if at is not None}
        unsets = {f"bought.{k}": "" for k, at in bought.items() if at is None}
        await self._write(shop_id, line_user_id, sets, unsets, now)

    async def _write(self, shop_id: str, line_user_id: str, sets: dict[str, Any], unsets: dict[str, Any],
                     now: datetime) -> None:
        update: dict[str, Any] = {"$set": {**sets, "updated_at": now},
                                  "$setOnInsert": {"shop_id": shop_id, "line_user_id": line_user_id}}
        if unsets:
            update["$unset"] = unsets
        await self._profiles.update_one({"_id": customer_key(shop_id, line_user_id)}, update, upsert=True)


class ReminderPauses:
    """Shops whose reminders are paused (the LINE channel's monthly quota ran out): `reminder_shop_state`."""

    def __init__(self, database: Database, pause: timedelta = timedelta(hours=1)) -> None:
        self._state = database["reminder_shop_state"]
        self._pause = pause

    async def paused_shops(self, now: datetime) -> list[str]:
        return [doc["_id"] async for doc in self._state.find({"paused_until": {"$gt": now}}, {"_id": 1})]

    async def pause(self, shop_id: str, now: datetime, reason: str) -> None:
        await self._state.update_one(
            {"_id": shop_id}, {"$set": {"paused_until": now + self._pause, "reason": reason, "paused_at": now}},
            upsert=True,
        )

    async def paused_until(self, shop_id: str, now: datetime) -> datetime | None:
        doc = await self._state.find_one({"_id": shop_id})
        until = doc.get("paused_until") if doc else None
        return until if until is not None and until > now else None
