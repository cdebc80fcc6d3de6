"""`reminder_profiles`: what browse reminders need about each customer's views and purchases, kept at ingest.

One document per customer (`_id` = customer key), written by the ingest listeners
(`flows.reminders.state`) and joined to the engine's batch by `_id`; see
`flows.reminders.profile` for the document. The reminder *scheduling* state lives
in the customer's contact (`storage.contacts`, `flows.reminders`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from storage.database import Database, Document, find_by_ids
from storage.keys import customer_key

PROFILES = "reminder_profiles"



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
