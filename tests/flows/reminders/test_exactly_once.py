"""Exactly once: leases, crash recovery, quota pause, the dry run's no-side-effects, indexes, three workers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.typedefs import LINE
from core.line_client import retry_key_for
from storage.reminders import ReminderStateRepository
from tests.conftest import START
from tests.flows.reminders.conftest import World, bubbles, days, due_ids

USERS = [f"U{i:032x}" for i in range(1, 41)]


async def seed(world: World, users: list[str]) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1", stock=2)
    await world.product("p2")
    for user in users:
        await world.customer(user)
        await world.view(user, "p1", START)


async def test_dry_run_explains_without_sending_or_claiming(world: World) -> None:
    await seed(world, USERS[:1])
    user = USERS[0]
    before = await world.reminder(user)
    response = await world.client.get(f"/admin/api/v1/shops/{world.shop.shop_id}/reminders/dry-run",
                                      params={"line_user_id": user}, headers=world.shop.auth)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["now"]["action"] == "wait"
    then = body["then"]
    assert then["action"] == "send" and then["step"] == 1 and then["at"] == (START + days(3)).isoformat()
    assert [(p["product_id"], p["reason"]) for p in then["products"]] == [
        ("p1", "viewed 1×"), ("p2", "shop best-seller")]
    assert then["message"]["contents"]["type"] == "carousel"
    assert await world.pushes() == [] and await world.reminder(user) == before

    # The preview is what the engine sends.
    await world.run(START + days(3))
    (push,) = await world.pushes(user)
    assert push["messages"][0] == then["message"] and push["retry_key"] == then["retry_key"]

    missing = await world.client.get(f"/admin/api/v1/shops/{world.shop.shop_id}/reminders/dry-run",
                                     params={"line_user_id": "Unobody"}, headers=world.shop.auth)
    assert missing.status == 404 and (await missing.json())["error"]["field"] == "line_user_id"
    bad = await world.client.get(f"/admin/api/v1/shops/{world.shop.shop_id}/reminders/dry-run",
                                 params={"line_user_id": user, "at": "2037-12-01T10:00:00"}, headers=world.shop.auth)
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "at"


async def test_a_worker_killed_after_pushing_is_redone_without_a_duplicate(world: World) -> None:
    await seed(world, USERS[:3])
    repo = ReminderStateRepository(world.db)
    now = START + days(3)
    wall = datetime.now(UTC)
    ids = await due_ids(repo, now)
    claimed = await repo.claim(ids, "dead-worker", now, wall, wall + timedelta(minutes=5))
    assert len(claimed) == 3
    # The dead worker pushed to the first customer, then died before recording anything.
    first = claimed[0]
    key = retry_key_for(world.shop.shop_id, first["line_user_id"], "reminders", first["reminder"]["cycle_id"], 1)
    line = world.client.app[LINE].for_token(world.shop.channel_access_token)
    await line.push(first["line_user_id"], [{"type": "text", "text": "partial"}], retry_key=key)

    assert (await world.run(now)).get("customers", 0) == 0  # leased: nobody else touches them
    late = lambda: wall + timedelta(minutes=6)
    summary = await world.run(now, wall_clock=late)
    assert summary["sent"] == 3 and summary["already_accepted"] == 1
    assert len(await world.pushes()) == 3  # the first customer's message is not sent twice
    assert await world.db["deliveries"].count_documents({"status": "sent"}) == 3


async def test_quota_exhaustion_pauses_the_shop_and_is_reported(world: World) -> None:
    await seed(world, USERS[:2])
    await world.sim.config(monthly_quota=0)
    summary = await world.run(START + days(3))
    assert summary["quota_exhausted"] >= 1 and summary["shops_paused"] == 1 and summary.get("sent", 0) == 0
    report = await world.report()
    assert report["paused_until"] is not None
    assert all(r["next_due_at"] is not None for r in [await world.reminder(u) for u in USERS[:2]])
    await world.sim.config(monthly_quota=None)
    assert (await world.run(START + days(3, ) + timedelta(minutes=30))).get("sent", 0) == 0  # still paused
    assert (await world.run(START + days(3) + timedelta(hours=2)))["sent"] == 2


async def test_redirect_refuses_unknown_tokens(world: World) -> None:
    for path in ("/r/nothing", "/r/" + "0" * 32 + "-0", "/r/https%3A%2F%2Fevil.example"):
        response = await world.client.get(path, allow_redirects=False)
        assert response.status == 404


async def test_the_due_stream_uses_its_index(world: World) -> None:
    await seed(world, USERS[:3])
    now = START + days(3)
    repo = ReminderStateRepository(world.db)
    for shop_id in (None, world.shop.shop_id):  # every shop, and `run-once --shop`
        plan = json.dumps(await repo.due_stream_cursor(now, shop_id, 10).explain(), default=str)
        assert "COLLSCAN" not in plan and "reminder_due" in plan
    # The batch's own reads (profiles, catalogue, views, orders) are checked in test_profiles.py.


async def test_three_run_once_processes_send_every_message_once(world: World, settings: Any) -> None:
    await seed(world, USERS)
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "LINE_API_BASE": settings.line_api_base, "PUBLIC_BASE_URL": "http://shop-bot.test", "LOG_LEVEL": "WARNING"}

    async def run_once() -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scheduler", "run-once", "--now", (START + days(3)).isoformat(),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        return json.loads(out)

    results = await asyncio.gather(run_once(), run_once(), run_once())
    sent = [r["jobs"]["reminders"].get("sent", 0) for r in results]
    assert sum(sent) == len(USERS)
    pushes = await world.pushes()
    assert sorted(p["to"] for p in pushes) == sorted(USERS)
    assert all(len(bubbles(p)) == 2 for p in pushes)
