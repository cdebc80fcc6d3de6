"""A worker process killed (SIGKILL) in the middle of the expiry job or of sending the notices: the next run
finishes the work; no lot expires twice, no balance is wrong, no notice goes out twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from tests.flows.points.conftest import World
from tests.flows.points.test_monthly import tokyo

USERS = [f"U{i:032x}" for i in range(1, 121)]
MOMENT = tokyo(2038, 1, 31, 12, 0)


async def seed(world: World) -> None:
    await world.settings(expiry_reminder=False)
    await world.follow(*USERS)
    world.clock.set(MOMENT - timedelta(days=20))
    for user in USERS:
        await world.earn(user, f"{user}-a", 100, expires_at=MOMENT)
        await world.earn(user, f"{user}-b", 50)
    # The live path announced nothing yet: the worker is down until the moment.


async def kill_run_once_when(world: World, settings: Any, ready: Callable[[], Awaitable[bool]]) -> None:
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "LINE_API_BASE": settings.line_api_base, "PUBLIC_BASE_URL": "http://shop-bot.test", "LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scheduler", "run-once", "--now", (MOMENT + timedelta(minutes=1)).isoformat(),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(3000):
            if await ready() or process.returncode is not None:
                break
            await asyncio.sleep(0.01)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()


async def check_everything_once(world: World) -> None:
    for minutes in (2, 8, 15):  # the dead worker's leases run out after 5 minutes
        await world.run(MOMENT + timedelta(minutes=minutes))
    ledger = [doc async for doc in world.db["points_ledger"].find({"shop_id": world.shop.shop_id})]
    expired = Counter(doc["line_user_id"] for doc in ledger if doc["type"] == "expire")
    assert expired == Counter(USERS)
    for user in USERS:
        assert await world.balance(user) == 50 == sum(d["delta"] for d in ledger if d["line_user_id"] == user)
    notices = Counter(to for to, _ in await world.notices())
    assert notices == Counter(USERS)  # one earned notice each, never two


async def test_a_worker_killed_during_the_expiry_job(world: World, settings: Any) -> None:
    await seed(world)

    async def some_expired() -> bool:
        return await world.db["points_ledger"].count_documents({"type": "expire"}) >= 10

    await kill_run_once_when(world, settings, some_expired)
    await check_everything_once(world)


async def test_a_worker_killed_while_sending_the_notices(world: World, settings: Any) -> None:
    await seed(world)

    async def some_sent() -> bool:
        return len(await world.pushes()) >= 10

    # LINE answers slowly: the worker dies with pushes accepted, in flight and not yet sent.
    await world.sim.faults("push", latency_ms=200, count=len(USERS))
    await kill_run_once_when(world, settings, some_sent)
    await world.sim.clear_faults()
    await check_everything_once(world)
