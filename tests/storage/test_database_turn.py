"""Handling's turns at the database: one at a time, each behind the acknowledgements waiting - but never
held back longer than its patience, so handling progresses under sustained load."""

from __future__ import annotations

import asyncio
import time

from storage.group_commit import DatabaseTurn


async def test_a_turn_waits_for_the_acknowledgements_then_starts() -> None:
    acknowledgements = asyncio.Event()
    turn = DatabaseTurn(acknowledgements.wait, patience=5.0)
    order: list[str] = []

    async def handling() -> None:
        async with turn:
            order.append("handling")

    task = asyncio.ensure_future(handling())
    await asyncio.sleep(0.02)
    order.append("acknowledged")
    acknowledgements.set()
    await asyncio.wait_for(task, 1)
    assert order == ["acknowledged", "handling"]


async def test_under_sustained_acknowledgements_a_turn_starts_after_its_patience() -> None:
    never = asyncio.Event()
    turn = DatabaseTurn(never.wait, patience=0.05)
    started = time.perf_counter()
    async with turn:
        waited = time.perf_counter() - started
    assert 0.04 <= waited < 1.0


async def test_one_turn_at_a_time() -> None:
    turn = DatabaseTurn()
    inside = 0
    most = 0

    async def use() -> None:
        nonlocal inside, most
        async with turn:
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.005)
            inside -= 1

    await asyncio.gather(*(use() for _ in range(5)))
    assert most == 1
