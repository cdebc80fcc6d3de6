"""Three worker processes and two flows at once: every message exactly once, the frequency cap never exceeded.

The second flow (`pings`) is defined by the tests, so this also shows the
engine runs any flow it is composed with.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from core.clock import as_utc
from storage.contacts import ContactRepository
from tests.conftest import START
from tests.flows.reminders.conftest import World, days

USERS = [f"U{i:032x}" for i in range(100, 130)]


async def run_workers(world: World, settings: Any, now: datetime, count: int = 3) -> list[dict[str, Any]]:
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "LINE_API_BASE": settings.line_api_base, "PUBLIC_BASE_URL": "http://shop-bot.test", "LOG_LEVEL": "WARNING"}

    async def one() -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.delivery.two_flows_worker", "--now", now.isoformat(),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        return dict(json.loads(out))

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_three_workers_two_flows_each_message_once_and_the_cap_holds(world: World, settings: Any) -> None:
    await world.settings(quiet_hours={"enabled": False})
    response = await world.client.put(f"/admin/api/v1/shops/{world.shop.shop_id}/settings/delivery",
                                      json={"frequency_cap": {"per_day": 1}}, headers=world.shop.auth)
    assert response.status == 200, await response.text()
    await world.product("p1")
    contacts = ContactRepository(world.db)
    for user in USERS:
        await world.customer(user)
        await world.view(user, "p1", START)  # a reminder due at START + 3 days
        # and a ping due an hour earlier: the cap lets one message a day through, the earlier-due one
        await contacts.put_flow_state(world.shop.shop_id, user, "pings", {"number": 1},
                                      due_at=START + days(3) - timedelta(hours=1))

    first = await run_workers(world, settings, START + days(3))
    assert sum(r.get("pings:sent", 0) for r in first) == len(USERS)
    assert sum(r.get("reminders:deferred:frequency_cap", 0) for r in first) == len(USERS)
    assert sum(r.get("reminders:sent", 0) for r in first) == 0
    pushes = await world.pushes()
    assert sorted(p["to"] for p in pushes) == sorted(USERS)  # one message each, exactly once
    assert all(p["messages"][0]["text"] == "ping 1" for p in pushes)

    second = await run_workers(world, settings, START + days(4) - timedelta(hours=1))  # 23 h after the pings
    assert sum(r.get("sent", 0) for r in second) == 0
    dues = {as_utc((await world.reminder(u))["due_at"]) for u in USERS}
    assert dues == {START + days(4)}  # deferred to when the cap allows
    third = await run_workers(world, settings, START + days(4) + timedelta(hours=2))
    assert sum(r.get("reminders:sent", 0) for r in third) == len(USERS)

    pushes = await world.pushes()
    per_user = Counter(p["to"] for p in pushes)
    assert per_user == Counter({user: 2 for user in USERS})
    assert len({p["retry_key"] for p in pushes}) == len(pushes)
    for user in USERS:  # the cap, from the engine's own send log: never two sends within 24 hours
        sent = sorted(as_utc(entry["at"]) for entry in (await world.contact(user))["sent"])
        assert len(sent) == 2 and sent[1] - sent[0] >= timedelta(hours=24)
