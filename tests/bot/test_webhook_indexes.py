"""The webhook store's queries run on indexes (explain: IXSCAN, never COLLSCAN)."""

from __future__ import annotations

from typing import Any

from core.clock import FixedClock
from linesim import webhook as events
from storage.database import Database
from storage.webhook_events import WebhookEventRepository
from tests.bot.conftest import USER
from tests.conftest import ShopHandle


def _stages(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "stage" in plan:
            found.add(plan["stage"])
        for value in plan.values():
            found |= _stages(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _stages(value)
    return found


async def test_recovery_and_lookup_queries_use_indexes(db: Database, shop: ShopHandle, clock: FixedClock) -> None:
    stored = await WebhookEventRepository(db).store(
        shop.shop_id, [events.follow_event(USER) for _ in range(20)], clock.now())
    ids = [doc["_id"] for doc in stored.new[:5]]
    collection = db["webhook_events"]
    queries = [
        collection.find({"state": "handling", "lease_until": {"$lte": clock.now()}}, {"_id": 1}).sort("lease_until", 1),
        collection.find({"claim": stored.claim, "state": "handling", "_id": {"$in": ids}}),  # recovery claim
        collection.find({"_id": ids[0], "claim": stored.claim, "state": "handling"}),  # finish
        collection.find({"claim": stored.claim}),  # read back
        collection.find({"_id": ids[0]}),  # mark_responded
        collection.find({"shop_id": shop.shop_id}),
    ]
    for cursor in queries:
        plan = await cursor.explain()
        assert "IXSCAN" in _stages(plan) and "COLLSCAN" not in _stages(plan), plan["queryPlanner"]
