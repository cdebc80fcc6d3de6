"""The browse-reminder state on each customer (`customers.reminder`) and its leased claims.

Sub-document: cycle_id, cycle_started_at, steps_sent [int], next_step (0-based),
next_due_at (UTC | None; indexed), status (active|done|stopped|disabled),
attempts, claim (token | None), lease_until (wall-clock UTC | None), updated_at.

Every change is a single conditional `update_one`/`update_many`, so web
processes (views, links, orders) and any number of workers can race safely:
a worker's result only lands while it still holds its claim on the same cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
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
CUSTOMER_FIELDS = {
    "shop_id": 1, "line_user_id": 1, "friend": 1, "blocked": 1, "opted_out": 1, "linked": 1,
    "totals": 1, "reminder": 1,
}


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

    async def claim(self, ids: Sequence[str], token: str, now: datetime, wall_now: datetime,
                    lease_until: datetime) -> list[Document]:
        """Atomically take those still due and unclaimed; read back what this token holds."""
        if not ids:
            return []
        await self._customers.update_many(
            {"_id": {"$in": list(ids)}, **self._due_filter(now, wall_now, None, ())},
            {"$set": {"reminder.claim": token, "reminder.lease_until": lease_until}},
            hint=BY_ID,
        )
        cursor = self._customers.find({"_id": {"$in": list(ids)}, "reminder.claim": token}, CUSTOMER_FIELDS).hint(BY_ID)
        return [doc async for doc in cursor]

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
