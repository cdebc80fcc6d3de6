"""Budgets of browser events: a browser's in its process (table), a shop's taken from the shared budget in
slices by several processes - never more than the shop's limit granted, a refusal or a give-back costs
nothing shared, and a new minute starts over."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from core.clock import FixedClock
from linking.budgets import SLICES_PER_MINUTE, BrowserBudgets, BrowserTake, ShopBudgets
from storage.rate_budgets import COLLECTION

T0 = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("takes", "expected"),
    [
        ([("b1", 3, 0)], [BrowserTake(True, True)]),
        ([("b1", 3, 0), ("b1", 2, 10)], [BrowserTake(True, True), BrowserTake(True, False)]),
        ([("b1", 3, 0), ("b1", 3, 10)], [BrowserTake(True, True), BrowserTake(False)]),  # 6 > 5
        ([("b1", 6, 0)], [BrowserTake(False)]),  # more than the whole budget
        ([("b1", 5, 0), ("b2", 5, 1)], [BrowserTake(True, True), BrowserTake(True, True)]),  # each its own
        ([("b1", 5, 0), ("b1", 5, 60)], [BrowserTake(True, True), BrowserTake(True, True)]),  # a new minute
        ([("b1", 0, 0)], [BrowserTake(False)]),
    ],
)
def test_a_browsers_budget(takes: list[tuple[str, int, int]], expected: list[BrowserTake]) -> None:
    budgets = BrowserBudgets(limit=5)
    assert [budgets.take("shop", browser, events, T0 + timedelta(seconds=at))
            for browser, events, at in takes] == expected


def test_a_browsers_refused_or_given_back_take_changes_nothing() -> None:
    budgets = BrowserBudgets(limit=5)
    assert budgets.take("shop", "b1", 4, T0).granted
    assert not budgets.take("shop", "b1", 2, T0).granted
    budgets.give_back("shop", "b1", 4, T0)
    assert budgets.take("shop", "b1", 5, T0).granted


async def test_processes_taking_a_shops_budget_in_slices_never_grant_more_than_it(
    client: TestClient[Any, Any], clock: FixedClock
) -> None:
    db = client.app[DATABASE]
    limit = 1000
    rng = random.Random(7)
    now = clock.now()
    granted = [0, 0, 0]

    async def process(index: int) -> None:  # a web process: its request groups one after another
        budgets = ShopBudgets()
        for _ in range(100):
            events = rng.randint(1, 20)
            if (await budgets.take(db, {"shop": (events, limit)}, now))["shop"]:
                granted[index] += events

    await asyncio.gather(*(process(index) for index in range(3)))  # ~3,150 events asked of 1,000
    # What a process keeps of its slice is granted to nobody else, and its last request may need more than
    # is left of it: at most a slice and a request per process less than the limit; never more.
    assert limit - 3 * (limit // SLICES_PER_MINUTE + 20) <= sum(granted) <= limit
    shared = [doc async for doc in db[COLLECTION].find()]
    assert len(shared) == 1 and shared[0]["count"] <= limit


async def test_a_shops_slice_serves_requests_without_shared_writes_and_a_new_minute_starts_over(
    client: TestClient[Any, Any], clock: FixedClock
) -> None:
    db = client.app[DATABASE]
    budgets = ShopBudgets()
    now = clock.now()
    assert await budgets.take(db, {"shop": (1, 5000)}, now) == {"shop": True}  # takes a slice of 100
    assert (await db[COLLECTION].find_one())["count"] == 100
    for _ in range(99):  # the rest of the slice: granted in memory
        assert await budgets.take(db, {"shop": (1, 5000)}, now) == {"shop": True}
    assert (await db[COLLECTION].find_one())["count"] == 100
    budgets.give_back("shop", 10, now)  # a request that was not stored after all
    assert await budgets.take(db, {"shop": (10, 5000)}, now) == {"shop": True}
    assert (await db[COLLECTION].find_one())["count"] == 100
    assert await budgets.take(db, {"shop": (4901, 5000)}, now) == {"shop": False}  # more than is left
    assert await budgets.take(db, {"shop": (4900, 5000)}, now) == {"shop": True}  # exactly what is left
    assert await budgets.take(db, {"shop": (1, 5000)}, now) == {"shop": False}
    clock.advance(timedelta(minutes=1))
    assert await budgets.take(db, {"shop": (1, 5000)}, clock.now()) == {"shop": True}
