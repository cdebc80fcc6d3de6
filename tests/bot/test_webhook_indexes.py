"""The webhook store's queries run on indexes (explain: IXSCAN, never COLLSCAN), and it keeps no index it
does not need (on the embedded database every secondary index costs every write of the collection)."""

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
    # The writes by event (claim, finish, release) filter on an `_id` list plus a claim/state precondition;
    # the engine fetches those by `_id` (explain shows the `_id` list alone as the access path).
    queries = [
        collection.find({"state": "handling", "lease_until": {"$lte": clock.now()}}, {"_id": 1}).sort("lease_until", 1),
        collection.find({"_id": {"$in": ids}}),  # recovery read back, finish, release
        collection.find({"_id": ids[0]}),
        db["webhook_answering"].find({"_id": {"$in": ids}}),  # a re-run's earlier answers
    ]
    for cursor in queries:
        plan = await cursor.explain()
        assert "IXSCAN" in _stages(plan) and "COLLSCAN" not in _stages(plan), plan["queryPlanner"]


async def test_only_the_indexes_it_needs(db: Database, shop: ShopHandle, clock: FixedClock) -> None:
    await WebhookEventRepository(db).store(shop.shop_id, [events.follow_event(USER)], clock.now())
    names = {index["name"] async for index in await db["webhook_events"].list_indexes()}
    assert names == {"_id_", "state_lease", "received_ttl"}
