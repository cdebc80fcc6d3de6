"""Three worker processes at one moment: every notice once, every lot expired once, balances exact."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

from storage.job_runs import JOB_RUNS
from tests.flows.points.conftest import World
from tests.flows.points.test_monthly import tokyo

USERS = [f"U{i:032x}" for i in range(1, 21)]


async def test_three_run_once_processes_send_each_notice_once(world: World, settings: Any) -> None:
    await world.settings(monthly_notice=True, monthly_day=1, monthly_hour=10)
    await world.follow(*USERS)
    moment = tokyo(2038, 1, 1, 10, 0)
    world.clock.set(tokyo(2037, 12, 25, 10, 0))
    for user in USERS:
        await world.earn(user, f"{user}-a", 100, expires_at=moment)  # expires at the run's moment
        await world.earn(user, f"{user}-b", 200, expires_at=moment + timedelta(days=7))  # reminded at the moment
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "LINE_API_BASE": settings.line_api_base, "PUBLIC_BASE_URL": "http://shop-bot.test", "LOG_LEVEL": "WARNING"}

    async def run_once() -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scheduler", "run-once", "--now", moment.isoformat(),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        return dict(json.loads(out))

    results = await asyncio.gather(run_once(), run_once(), run_once())
    assert sum(r["jobs"]["points_expiry"].get("entries", 0) for r in results) == len(USERS)
    assert sum(r["jobs"]["points_monthly"].get("shops", 0) for r in results) == 1
    for flow in ("points_earned", "points_monthly", "points_expiry"):
        assert sum(r["jobs"]["delivery"].get(f"{flow}:sent", 0) for r in results) == len(USERS)

    per_user = Counter((to, alt) for to, alt in await world.notices())
    assert set(per_user.values()) == {1}
    for user in USERS:
        assert sorted(alt for (to, alt) in per_user if to == user) == sorted([
            "300ptを獲得しました(現在 200pt)",  # both earns in one notice; the first lot has just expired
            "現在のポイント: 200pt",
            "200ptが2038年1月8日(金)に失効します",
        ])
        assert [e["amount"] for e in await world.ledger(user, "expire")] == [100]
        assert await world.balance(user) == 200
    assert [doc["status"] async for doc in world.db[JOB_RUNS].find({})] == ["done"]
