"""Shops whose deliveries are paused (the LINE channel's monthly quota ran out): `delivery_pauses`.

A pause lasts an hour, then the engine tries again: LINE answers the quota 429 at
once, so a spent quota costs one request per hour, not a loop.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.database import Database


class ShopPauses:
    def __init__(self, database: Database, pause: timedelta = timedelta(hours=1)) -> None:
        self._state = database["delivery_pauses"]
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
