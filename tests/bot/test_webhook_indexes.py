"""The webhook store's queries run on indexes (explain: IXSCAN, never COLLSCAN), and it keeps no index it
does not need (on the embedded database every secondary index costs every write of the collection)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.typedefs import DATABASE
from core.clock import FixedClock
from core.settings import Settings
from linesim import webhook as events
from storage.database import Database, connect
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
    batches = sorted({doc["batch"] for doc in stored.new})
    collection = db["webhook_batches"]
    # The writes by batch (claim, finish, release) filter on an `_id` list plus a claim/state precondition;
    # the engine fetches those by `_id` (explain shows the `_id` list alone as the access path).
    queries = [
        collection.find({"state": "handling", "lease_until": {"$lte": clock.now()}}, {"_id": 1}).sort("lease_until", 1),
        collection.find({"_id": {"$in": batches}}),  # recovery read back, release
        collection.find({"_id": batches[0]}),  # finish, answering marks
        collection.find({"keys": stored.new[3]["_id"]}),  # one event, by its key
        collection.find({"state": "handling"}, {"keys": 1}),  # events waiting
        db["webhook_handling"].find({"batches": batches[0]}),  # what earlier attempts did (recovery)
    ]
    for cursor in queries:
        plan = await cursor.explain()
        assert "IXSCAN" in _stages(plan) and "COLLSCAN" not in _stages(plan), plan["queryPlanner"]


async def test_only_the_indexes_it_needs(db: Database, shop: ShopHandle, clock: FixedClock) -> None:
    await WebhookEventRepository(db).store(shop.shop_id, [events.follow_event(USER)], clock.now())
    names = {index["name"] async for index in await db["webhook_batches"].list_indexes()}
    assert names == {"_id_", "state_lease", "event_keys", "received_ttl"}


async def test_indexes_earlier_versions_made_are_dropped_at_start_up(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], settings: Settings, clock: FixedClock
) -> None:
    database = connect(settings.mongodb_uri or "", settings.mongodb_db)
    try:
        await database["webhook_events"].create_index([("shop_id", 1), ("webhook_event_id", 1)],
                                                      name="shop_webhook_event", unique=True)
        await database["webhook_events"].create_index([("claim", 1), ("state", 1), ("_id", 1)], name="claim_state_id")
    finally:
        await database.close()
    app = (await aiohttp_client(create_app(settings, clock=clock))).app
    names = {index["name"] async for index in await app[DATABASE]["webhook_events"].list_indexes()}
    assert names == {"_id_"}
