"""What every flow delivered: batch records, clicks and conversions (the reports read these, nothing else).

- `delivery_log`: one document per (claiming batch, shop, flow) holding that batch's records — sent, skipped
  (why), failed, held out (would have been sent) or deferred (why, until when). Written once per batch before
  the contacts settle, with `_id` = "<token>:<shop>:<flow>", so a rerun writes nothing twice and a worker that
  takes over a lapsed claim finds what the dead one recorded (`for_tokens`). One insert per batch instead of
  one per message: the per-message cost is the contact's settle alone.
  Item: {key (retry key), user, step, status, reason, group, sent_at, until, cycle, detail}.
- `clicks`: one document per click on a button we sent (`/r/…`): shop, flow, step, key, target, at.
- `conversions`: an order attributed to a flow's record (`_id` = "<shop>:<order>:<flow>"): the record's key,
  step and group (treated = sent, holdout = held), revenue, ordered_at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from storage.bulk import insert_new
from storage.database import Database, Document, IndexSpec

LOG = "delivery_log"
CLICKS = "clicks"
CONVERSIONS = "conversions"
LOG_AT_INDEX = [("shop_id", ASCENDING), ("flow", ASCENDING), ("at", ASCENDING)]
CLICKS_AT_INDEX = [("shop_id", ASCENDING), ("flow", ASCENDING), ("at", ASCENDING)]
CLICKS_KEY_INDEX = [("key", ASCENDING), ("at", ASCENDING)]
CONVERSIONS_INDEX = [("shop_id", ASCENDING), ("flow", ASCENDING), ("ordered_at", ASCENDING)]
CONVERSIONS_ORDER_INDEX = [("shop_id", ASCENDING), ("order_id", ASCENDING)]
INDEXES: list[IndexSpec] = [
    IndexSpec(LOG, LOG_AT_INDEX, "shop_flow_at"),
    IndexSpec(CLICKS, CLICKS_AT_INDEX, "shop_flow_at"),
    IndexSpec(CLICKS, CLICKS_KEY_INDEX, "key_at"),
    IndexSpec(CONVERSIONS, CONVERSIONS_INDEX, "shop_flow_ordered"),
    IndexSpec(CONVERSIONS, CONVERSIONS_ORDER_INDEX, "shop_order"),
]


class DeliveryLog:
    def __init__(self, database: Database) -> None:
        self._log = database[LOG]
        self._clicks = database[CLICKS]
        self._conversions = database[CONVERSIONS]

    async def write(self, batches: Iterable[Document]) -> None:
        await insert_new(self._log, list(batches))

    async def for_tokens(self, tokens: Iterable[str]) -> dict[str, Document]:
        """Items recorded by these (lapsed) claims, by key: one `_id` range read per token."""
        found: dict[str, Document] = {}
        for token in sorted(set(tokens)):
            async for batch in self._log.find({"_id": {"$gte": f"{token}:", "$lt": f"{token};"}}):
                for item in batch.get("items") or []:
                    found[item["key"]] = item
        return found

    def batches(self, shop_id: str, flow: str, start: datetime, end: datetime) -> AsyncIterator[Document]:
        """The flow's batch documents decided in [start, end)."""
        return self._log.find({"shop_id": shop_id, "flow": flow, "at": {"$gte": start, "$lt": end}},
                              ).__aiter__()

    async def flow_names(self, shop_id: str, prefix: str) -> list[str]:
        """The flow names starting with `prefix` the shop has records of (e.g. its step sequences), sorted."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        pipeline: list[dict[str, Any]] = [{"$match": {"shop_id": shop_id, "flow": {"$gte": prefix, "$lt": end}}},
                                          {"$group": {"_id": "$flow"}}]
        return sorted([group["_id"] async for group in await self._log.aggregate(pipeline)])

    # --- clicks ---

    async def record_click(self, shop_id: str, flow: str, step: int | None, key: str, target: str,
                           at: datetime) -> None:
        await self._clicks.insert_one({"shop_id": shop_id, "flow": flow, "step": step, "key": key,
                                       "target": target, "at": at})

    async def clicks_by_step_and_day(self, shop_id: str, flow: str, start: datetime, end: datetime,
                                     timezone: str) -> dict[tuple[int | None, str], int]:
        """Clicks in [start, end) counted per (step, "YYYY-MM-DD" in `timezone`): one indexed aggregate."""
        day = {"$dateToString": {"format": "%Y-%m-%d", "date": "$at", "timezone": timezone}}
        pipeline: list[dict[str, Any]] = [
            {"$match": {"shop_id": shop_id, "flow": flow, "at": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": {"step": "$step", "day": day}, "n": {"$sum": 1}}}]
        return {(group["_id"].get("step"), group["_id"]["day"]): group["n"]
                async for group in await self._clicks.aggregate(pipeline)}

    async def clicks_of(self, key: str, start: datetime, end: datetime) -> int:
        """Clicks on the links of one delivery key in [start, end) (a broadcast: one key for everyone)."""
        pipeline: list[dict[str, Any]] = [{"$match": {"key": key, "at": {"$gte": start, "$lt": end}}}, {"$count": "n"}]
        found = [doc async for doc in await self._clicks.aggregate(pipeline)]
        return int(found[0]["n"]) if found else 0

    async def key_clicks_by_step_and_day(self, key: str, start: datetime, end: datetime,
                                         timezone: str) -> dict[tuple[int | None, str], int]:
        """`clicks_by_step_and_day` for one delivery key (a broadcast's), through the (key, at) index."""
        day = {"$dateToString": {"format": "%Y-%m-%d", "date": "$at", "timezone": timezone}}
        pipeline: list[dict[str, Any]] = [
            {"$match": {"key": key, "at": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": {"step": "$step", "day": day}, "n": {"$sum": 1}}}]
        return {(group["_id"].get("step"), group["_id"]["day"]): group["n"]
                async for group in await self._clicks.aggregate(pipeline)}

    async def first_clicks(self, keys: Sequence[str]) -> dict[str, datetime]:
        """The first click on each of these deliveries (a customer's few recent keys; an indexed read each)."""
        found: dict[str, datetime] = {}
        for key in dict.fromkeys(keys):
            doc = await self._clicks.find_one({"key": key}, sort=[("at", ASCENDING)])
            if doc is not None:
                found[key] = doc["at"]
        return found

    # --- conversions ---

    async def add_conversions(self, conversions: Sequence[Document]) -> None:
        for conversion in conversions:
            await self._conversions.update_one({"_id": conversion["_id"]}, {"$setOnInsert": conversion}, upsert=True)

    async def remove_conversions(self, shop_id: str, order_id: str) -> int:
        """A cancelled or refunded order is no longer anyone's conversion."""
        result = await self._conversions.delete_many({"shop_id": shop_id, "order_id": order_id},
                                                     )
        return result.deleted_count

    def conversions(self, shop_id: str, flow: str, start: datetime, end: datetime) -> AsyncIterator[Document]:
        return self._conversions.find({"shop_id": shop_id, "flow": flow, "ordered_at": {"$gte": start, "$lt": end}},
                                      ).__aiter__()
