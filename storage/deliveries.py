"""Deliveries: one record per (campaign, customer, cycle, step) — sent, skipped (why) or failed.

`_id` is the push's retry key (a UUID derived from what is sent), so a record
can be written again after a crash without a second copy, and the click
redirect can find it without putting the LINE user ID in a URL. Also holds
clicks (counters on the delivery) and conversions (`conversions`, one per order).

Document (`deliveries`): _id (retry key), shop_id, key ("<campaign>:<user>:<cycle>:<step>"),
campaign, step (1-based), line_user_id, cycle_id, status (sent|skipped|failed),
reason (str | None), products [{product_id, reason}], at (decision time), sent_at,
request_id, already_accepted, clicks, clicks_by_product {index: n}, first_clicked_at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING

from core.clock import as_utc
from storage.bulk import insert_new
from storage.database import Database, Document, IndexSpec
from storage.keys import shop_scoped
from storage.reminders import find_by_ids

CAMPAIGN_AT_INDEX = [("shop_id", ASCENDING), ("campaign", ASCENDING), ("at", ASCENDING)]
USER_SENT_INDEX = [("shop_id", ASCENDING), ("line_user_id", ASCENDING), ("sent_at", DESCENDING)]
CONVERSIONS_INDEX = [("shop_id", ASCENDING), ("campaign", ASCENDING), ("ordered_at", ASCENDING)]
# Queries name their index (`hint`): SecantusDB's planner otherwise scans when a filter has extra fields.
INDEXES: list[IndexSpec] = ([

    IndexSpec("deliveries", [("shop_id", ASCENDING), ("key", ASCENDING)], "shop_delivery", unique=True),
        IndexSpec("deliveries", CAMPAIGN_AT_INDEX, "shop_campaign_at"),
    IndexSpec("deliveries", USER_SENT_INDEX, "shop_user_sent"),
    IndexSpec("conversions", CONVERSIONS_INDEX, "shop_campaign_ordered"),
])


@dataclass(frozen=True)
class StepReport:
    step: int
    targeted: int
    sent: int
    skipped: dict[str, int]
    failed: int
    clicks: int
    conversions: int
    revenue: int


class DeliveryRepository:
    def __init__(self, database: Database) -> None:
        self._deliveries = database["deliveries"]
        self._conversions = database["conversions"]

    async def existing(self, ids: Sequence[str]) -> dict[str, Document]:
        """Deliveries already recorded among these ids (chunked concurrent `_id` reads for a batch)."""
        if not ids:
            return {}
        return {doc["_id"]: doc for doc in await find_by_ids(self._deliveries, ids)}

    async def record_many(self, records: Iterable[dict[str, Any]]) -> None:
        """Write records once: the first write of an id wins, a repeat changes nothing.

        An unordered `insert_many` whose duplicate-key errors are the repeats:
        on the embedded database it costs a third of the equivalent upserts.
        """
        await insert_new(self._deliveries, list(records))

    async def get(self, delivery_id: str) -> Document | None:
        return await self._deliveries.find_one({"_id": delivery_id})

    async def record_click(self, delivery_id: str, index: int, now: datetime) -> None:
        await self._deliveries.update_one(
            {"_id": delivery_id},
            {"$inc": {"clicks": 1, f"clicks_by_product.{index}": 1}, "$min": {"first_clicked_at": now}},
        )

    async def attribute_order(self, order: Document, window_days: int, campaign: str) -> Document | None:
        """A paid order that follows a sent delivery within the window is that delivery's conversion.

        Idempotent per order (`_id` = shop:order_id); the latest delivery before the order wins.
        """
        ordered_at = as_utc(order.get("ordered_at") or order["created_at"])
        delivery = await self._deliveries.find_one(
            {
                "shop_id": order["shop_id"],
                "line_user_id": order["line_user_id"],
                "sent_at": {"$lte": ordered_at, "$gte": ordered_at - timedelta(days=window_days)},
                "campaign": campaign,
                "status": "sent",
            },
            sort=[("sent_at", DESCENDING)],
            hint=USER_SENT_INDEX,
        )
        if delivery is None:
            return None
        conversion = {
            "_id": shop_scoped(order["shop_id"], order["order_id"]),
            "shop_id": order["shop_id"],
            "campaign": campaign,
            "order_id": order["order_id"],
            "line_user_id": order["line_user_id"],
            "delivery_id": delivery["_id"],
            "step": delivery["step"],
            "delivery_at": delivery["sent_at"],
            "revenue": int(order.get("total") or 0),
            "ordered_at": ordered_at,
        }
        await self._conversions.update_one({"_id": conversion["_id"]}, {"$setOnInsert": conversion}, upsert=True)
        return conversion

    async def remove_conversion(self, shop_id: str, order_id: str) -> None:
        """A cancelled or refunded order is no longer a conversion."""
        await self._conversions.delete_one({"_id": shop_scoped(shop_id, order_id)})

    async def report(self, shop_id: str, campaign: str, start: datetime, end: datetime) -> list[StepReport]:
        """Per step over [start, end): deliveries by decision time, conversions by order time."""
        steps: dict[int, dict[str, Any]] = {}

        def row(step: int) -> dict[str, Any]:
            return steps.setdefault(step, {"targeted": 0, "sent": 0, "skipped": {}, "failed": 0, "clicks": 0,
                                           "conversions": 0, "revenue": 0})

        pipeline = [
            {"$match": {"shop_id": shop_id, "campaign": campaign, "at": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": {"step": "$step", "status": "$status", "reason": "$reason"},
                        "n": {"$sum": 1}, "clicks": {"$sum": {"$ifNull": ["$clicks", 0]}}}},
        ]
        async for group in await self._deliveries.aggregate(pipeline, hint="shop_campaign_at"):
            key, r = group["_id"], row(group["_id"]["step"])
            r["targeted"] += group["n"]
            r["clicks"] += group["clicks"]
            if key["status"] == "skipped":
                r["skipped"][key["reason"] or "unknown"] = r["skipped"].get(key["reason"] or "unknown", 0) + group["n"]
            elif key["status"] in ("sent", "failed"):
                r[key["status"]] += group["n"]
        pipeline = [
            {"$match": {"shop_id": shop_id, "campaign": campaign, "ordered_at": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": "$step", "n": {"$sum": 1}, "revenue": {"$sum": "$revenue"}}},
        ]
        async for group in await self._conversions.aggregate(pipeline, hint="shop_campaign_ordered"):
            r = row(group["_id"])
            r["conversions"] += group["n"]
            r["revenue"] += group["revenue"]
        return [StepReport(step=step, **steps[step]) for step in sorted(steps)]
