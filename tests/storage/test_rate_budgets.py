"""Per-minute budgets in MongoDB: taken for many keys in one write, exact under concurrency, a refusal
changes nothing, a new minute starts over."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from core.clock import FixedClock
from storage.rate_budgets import Take, insert_only, take_all


async def test_budgets_hold_exactly_under_concurrency(client: TestClient[Any, Any], clock: FixedClock) -> None:
    collection = client.app[DATABASE]["budget_test"]
    now = clock.now()
    # 40 concurrent bulk writes of 3 takes each against two budgets of 50: exactly 50 granted per key.
    takes = [[Take("a", 1, 50), Take("b", 2, 50), Take("a", 1, 50)] for _ in range(40)]
    results = await asyncio.gather(*(take_all(collection, batch, now) for batch in takes))
    granted_a = sum(1 for result in results for ok, take in zip(result, ["a", "b", "a"], strict=True) if ok and take == "a")
    granted_b = sum(2 for result in results if result[1])
    assert granted_a == 50 and granted_b == 50
    assert [doc["rate_mark"] % 10_000_000 async for doc in collection.find().sort("_id")] == [50, 50]


async def test_a_refusal_changes_nothing_and_a_new_minute_starts_over(
    client: TestClient[Any, Any], clock: FixedClock
) -> None:
    collection = client.app[DATABASE]["budget_test"]
    now = clock.now()
    fields = insert_only({"label": "first"}, now)
    assert await take_all(collection, [Take("k", 3, 3, fields), Take("k", 1, 3, insert_only({"label": "x"}, now))],
                          now) == [True, False]
    doc = await collection.find_one({"_id": "k"})
    assert doc is not None and doc["label"] == "first" and doc["first_seen_at"] == now
    assert await take_all(collection, [Take("k", 4, 3)], now) == [False]  # more than the whole budget
    assert await take_all(collection, [Take("new", 1, 3)], now) == [True]
    clock.advance(timedelta(minutes=1))
    assert await take_all(collection, [Take("k", 3, 3, insert_only({"label": "later"}, clock.now()))],
                          clock.now()) == [True]
    doc = await collection.find_one({"_id": "k"})
    assert doc is not None and doc["label"] == "first" and doc["first_seen_at"] == now  # kept from its creation
