"""The worker's stop: the tick in flight finishes before the database and LINE clients close under it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from delivery.context import JobContext, JobSummary
from scheduler.__main__ import run_worker
from scheduler.jobs import Job


async def test_stop_waits_for_the_running_tick_before_closing(settings: Any) -> None:
    started, finished = asyncio.Event(), asyncio.Event()
    seen: list[Any] = []

    async def slow_job(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
        started.set()
        await asyncio.sleep(0.5)
        seen.append(await ctx.database.shops.find_one({}))  # still open: this would raise after close
        finished.set()
        return {"done": 1}

    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop, jobs=[Job("slow", slow_job)]))
    await asyncio.wait_for(started.wait(), timeout=30)
    stop.set()
    await asyncio.wait_for(worker, timeout=30)
    assert finished.is_set() and len(seen) == 1


async def test_a_tick_past_the_grace_is_cancelled_and_the_worker_still_stops(settings: Any) -> None:
    started = asyncio.Event()

    async def stuck_job(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
        started.set()
        await asyncio.sleep(3600)
        return {}

    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop, grace=0.2, jobs=[Job("stuck", stuck_job)]))
    await asyncio.wait_for(started.wait(), timeout=30)
    stop.set()
    await asyncio.wait_for(worker, timeout=30)
