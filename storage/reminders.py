"""The browse-reminder state on each customer (`customers.reminder`) and its leased claims.

Sub-document: cycle_id, cycle_started_at, steps_sent [int], next_step (0-based),
next_due_at (UTC | None; indexed), status (active|done|stopped|disabled),
attempts, claim (token | None), lease_until (wall-clock UTC | None), updated_at.

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
`scheduler.reminders.profile` for the document).
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

from storage.customers import customer_key
from storage.database import Database, Document, IndexSpec, register_indexes

register_indexes([
    IndexSpec("customers", [("reminder.next_due_at", ASCENDING)], "reminder_due"),
    IndexSpec("customers", [("shop_id", ASCENDING), ("reminder.next_due_at", ASCENDING)], "shop_reminder_due"),
])

# SecantusDB's planner scans the collection when a filter has predicates beyond an
# index's fields, so every query here names its index (`hint`); `_id` lookups too.
BY_ID = "_id_"
DUE_INDEX = [("reminder.next_due_at", ASCENDING)]
SHOP_DUE_INDEX = [("shop_id", ASCENDING), ("reminder.next_due_at", ASCENDING)]

# Not in an active cycle: a view may start one.
NOT_ACTIVE = {"reminder.status": {"$ne": "active"}}  # also matches a customer without reminder state
CHUNK = 50  # ids per `$in` (see the module docstring)
CUSTOMER_FIELDS = {
    "shop_id": 1, "line_user_id": 1, "friend": 1, "blocked": 1, "opted_out": 1, "linked": 1,
    "totals": 1, "reminder": 1,
}


async def find_by_ids(collection: AsyncCollection[Document], ids: Sequence[str],
                     projection: Mapping[str, Any] | None = None) -> list[Document]:
    """Documents by `_id`, in concurrent chunks (one round trip's latency, not one per chunk)."""
    unique = list(dict.fromkeys(ids))
    chunks = [unique[i:i + CHUNK] for i in range(0, len(unique), CHUNK)]

    async def read(chunk: list[str]) -> list[Document]:
        return [doc async for doc in collection.find({"_id": {"$in": chunk}}, projection)]

    return [doc for part in await asyncio.gather(*(read(chunk) for chunk in chunks)) for doc in part]


@dataclass(frozen=True)
class DueRef:
    """A due customer as the due stream sees it (enough to skip paused shops and live leases)."""

    id: str
    shop_id: str
    lease_until: datetime | None


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
        self._customers = database["customers"]

    async def start_cycle_if_idle(self, shop_id: str, line_user_id: str, cycle: dict[str, Any]) -> bool:
        """Start a cycle unless one is running (a view during a cycle does not move its anchor)."""
        result = await self._customers.update_one(
            {"_id": customer_key(shop_id, line_user_id), **NOT_ACTIVE}, {"$set": {"reminder": cycle}}, hint=BY_ID
        )
        return result.modified_count == 1

    async def reanchor_unsent(self, shop_id: str, line_user_id: str, cycle: dict[str, Any]) -> bool:
        """Move a running cycle to an earlier first view, only while nothing was sent and no worker holds it."""
        result = await self._customers.update_one(
            {
                "_id": customer_key(shop_id, line_user_id),
                "reminder.status": "active",
                "reminder.steps_sent": {"$size": 0},
                "reminder.claim": None,
                "reminder.cycle_started_at": {"$gt": cycle["cycle_started_at"]},
            },
            {"$set": {"reminder": cycle}},
            hint=BY_ID,
        )
        return result.modified_count == 1

    async def stop_cycle(self, shop_id: str, line_user_id: str, after: datetime, now: datetime) -> bool:
        """A purchase at `after` stops a cycle that started before it."""
        result = await self._customers.update_one(
            {
                "_id": customer_key(shop_id, line_user_id),
                "reminder.status": "active",
                "reminder.cycle_started_at": {"$lte": after},
            },
            {"$set": {"reminder.status": "stopped", "reminder.next_due_at": None, "reminder.claim": None,
                      "reminder.lease_until": None, "reminder.updated_at": now}},
            hint=BY_ID,
        )
        return result.modified_count == 1

    async def get(self, shop_id: str, line_user_id: str) -> Document | None:
        return await self._customers.find_one({"_id": customer_key(shop_id, line_user_id)}, CUSTOMER_FIELDS)

    def _due_filter(self, now: datetime, wall_now: datetime, shop_id: str | None,
                    paused: Sequence[str]) -> dict[str, Any]:
        query: dict[str, Any] = {
            "reminder.next_due_at": {"$lte": now},
            "reminder.lease_until": {"$not": {"$gt": wall_now}},  # never leased, or the lease ran out
        }
        if shop_id is not None:
            query["shop_id"] = shop_id
        elif paused:
            query["shop_id"] = {"$nin": list(paused)}
        return query

    def due_cursor(self, now: datetime, wall_now: datetime, shop_id: str | None, paused: Sequence[str],
                   limit: int) -> AsyncCursor[Document]:
        """Unclaimed customers due at `now`, oldest first, through the `next_due_at` index."""
        return self._customers.find(
            self._due_filter(now, wall_now, shop_id, paused), {"_id": 1}
        ).sort("reminder.next_due_at", ASCENDING).hint(SHOP_DUE_INDEX if shop_id else DUE_INDEX).limit(limit)

    async def due_ids(self, now: datetime, wall_now: datetime, shop_id: str | None, paused: Sequence[str],
                      limit: int) -> list[str]:
        return [doc["_id"] async for doc in self.due_cursor(now, wall_now, shop_id, paused, limit)]

    async def due_stream(self, now: datetime, shop_id: str | None, size: int) -> AsyncIterator[list[DueRef]]:
        """Every customer due at `now`, oldest first, in lists of `size`: one cursor for the whole run.

        The filter is exactly the index's field (plus the shop), so the planner
        uses it; leases and paused shops are filtered by the caller. The claim
        re-checks everything, so a stale entry costs a skipped id, never a send.
        """
        batch: list[DueRef] = []
        async for doc in self.due_stream_cursor(now, shop_id, size):
            batch.append(DueRef(doc["_id"], doc.get("shop_id", ""), (doc.get("reminder") or {}).get("lease_until")))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def due_stream_cursor(self, now: datetime, shop_id: str | None, size: int) -> AsyncCursor[Document]:
        query: dict[str, Any] = {"reminder.next_due_at": {"$lte": now}}
        if shop_id is not None:
            query["shop_id"] = shop_id
        return self._customers.find(
            query, {"_id": 1, "shop_id": 1, "reminder.lease_until": 1}
        ).sort("reminder.next_due_at", ASCENDING).hint(SHOP_DUE_INDEX if shop_id else DUE_INDEX).batch_size(size)

    async def claim(self, ids: Sequence[str], token: str, now: datetime, wall_now: datetime,
                    lease_until: datetime) -> list[Document]:
        """Atomically take those still due and unclaimed; read back what this token holds."""
        if not ids:
            return []
        due = self._due_filter(now, wall_now, None, ())
        unique = list(dict.fromkeys(ids))
        await asyncio.gather(*(
            self._customers.update_many(
                {"_id": {"$in": unique[i:i + CHUNK]}, **due},
                {"$set": {"reminder.claim": token, "reminder.lease_until": lease_until}},
            )
            for i in range(0, len(unique), CHUNK)
        ))
        docs = await find_by_ids(self._customers, unique, CUSTOMER_FIELDS)
        return [doc for doc in docs if (doc.get("reminder") or {}).get("claim") == token]

    async def settle(self, results: Sequence[tuple[str, str, str | None, dict[str, Any]]], now: datetime) -> None:
        """Apply (customer _id, claim token, cycle_id, reminder fields) and release the claims.

        Conditional on still holding the claim on the same cycle: an order that
        stopped the cycle meanwhile (it drops the claim), or a worker that took
        over an expired lease, wins.
        """
        ops = []
        for customer_id, token, cycle_id, fields in results:
            update = {f"reminder.{k}": v for k, v in fields.items()}
            update.update({"reminder.claim": None, "reminder.lease_until": None, "reminder.updated_at": now})
            ops.append(UpdateOne(
                {"_id": customer_id, "reminder.claim": token, "reminder.cycle_id": cycle_id},
                {"$set": update},
                hint=BY_ID,
            ))
        if ops:
            await self._customers.bulk_write(ops, ordered=False)


class ReminderProfileRepository:
    """`reminder_profiles`: one document per customer, written by the ingest listeners, read by `_id`.

    Map keys arrive escaped (`scheduler.reminders.profile.field_key`); every
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
