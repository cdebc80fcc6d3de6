"""Per-minute budgets in MongoDB: taken for many keys in one write, exact under concurrency, a refusal
changes nothing, a new minute starts over and says so."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from core.clock import FixedClock
from storage.rate_budgets import COLLECTION, Take, Taken, take_all


async def test_budgets_hold_exactly_under_concurrency(client: TestClient[Any, Any], clock: FixedClock) -> None:
    db = client.app[DATABASE]
    now = clock.now()
    # 40 concurrent bulk writes of 3 takes each against two budgets of 50: exactly 50 granted per key.
    batches = [[Take("a", 1, 50), Take("b", 2, 50), Take("a", 1, 50)] for _ in range(40)]
    results = await asyncio.gather(*(take_all(db, batch, now) for batch in batches))
    granted_a = sum(1 for result in results for taken in (result[0], result[2]) if taken.granted)
    granted_b = sum(2 for result in results if result[1].granted)
    assert granted_a == 50 and granted_b == 50
    assert sum(1 for result in results for taken in result if taken.opened) == 2  # one opening per key
    assert sorted([doc["count"] async for doc in db[COLLECTION].find()]) == [50, 50]


async def test_a_refusal_changes_nothing_and_a_new_minute_starts_over(
    client: TestClient[Any, Any], clock: FixedClock
) -> None:
    db = client.app[DATABASE]
    assert await take_all(db, [Take("k", 3, 3), Take("k", 1, 3)], clock.now()) == [Taken(True, True), Taken(False)]
    assert await take_all(db, [Take("k", 4, 3)], clock.now()) == [Taken(False)]  # more than the whole budget
    assert await take_all(db, [Take("other", 1, 3)], clock.now()) == [Taken(True, True)]
    assert [doc["count"] async for doc in db[COLLECTION].find().sort("_id")] == [3, 1]
    clock.advance(timedelta(minutes=1))
    assert await take_all(db, [Take("k", 2, 3), Take("k", 1, 3)], clock.now()) == [Taken(True, True), Taken(True)]
