"""Exactly once: leases, crash recovery, quota pause, the dry run's no-side-effects, indexes, three workers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Any

from bot.typedefs import LINE
from core.line_client import retry_key_for
from storage.contacts import ContactRepository
from storage.delivery_log import DeliveryLog
from tests.conftest import START
from tests.flows.reminders.conftest import World, bubbles, days, due_refs

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


async def dead_worker_claims(world: World, now: Any) -> tuple[list[dict[str, Any]], Any]:
    """A worker claims the due batch as the engine does, then dies (its lease runs 5 minutes)."""
    repo = ContactRepository(world.db)
    lease_at = now + timedelta(minutes=5)
    await repo.claim(await due_refs(repo, now), "dead-worker", lease_at, None)
    return await repo.claimed(lease_at, "dead-worker", []), lease_at


def reminder_key(world: World, contact: dict[str, Any], step: int = 1) -> str:
    cycle = contact["flows"]["reminders"]["cycle_id"]
    return retry_key_for(world.shop.shop_id, contact["line_user_id"], "reminders", cycle, step)


async def test_a_worker_killed_after_pushing_is_redone_without_a_duplicate(world: World) -> None:
    await seed(world, USERS[:3])
    now = START + days(3)
    claimed, _ = await dead_worker_claims(world, now)
    assert len(claimed) == 3
    # The dead worker pushed to the first customer, then died before recording anything.
    first = claimed[0]
    line = world.client.app[LINE].for_token(world.shop.channel_access_token)
    await line.push(first["line_user_id"], [{"type": "text", "text": "partial"}], retry_key=reminder_key(world, first))

    assert (await world.run(now)).get("contacts", 0) == 0  # leased: nobody else touches them
    summary = await world.run(now + timedelta(minutes=6))  # the lease ran out
    assert summary["sent"] == 3 and summary["already_accepted"] == 1
    assert len(await world.pushes()) == 3  # the first customer's message is not sent twice
    assert len(await world.records(status="sent")) == 3
    assert [(await world.contact(u))["claim"] for u in USERS[:3]] == [None] * 3


async def test_a_worker_killed_after_recording_settles_without_a_second_record_or_push(world: World) -> None:
    await seed(world, USERS[:2])
    now = START + days(3)
    claimed, _ = await dead_worker_claims(world, now)
    # The dead worker pushed to both and wrote its batch record, then died before settling the contacts.
    line = world.client.app[LINE].for_token(world.shop.channel_access_token)
    items = []
    for contact in claimed:
        key = reminder_key(world, contact)
        await line.push(contact["line_user_id"], [{"type": "text", "text": "sent"}], retry_key=key)
        items.append({"key": key, "user": contact["line_user_id"], "step": 1, "status": "sent", "group": "treated",
                      "sent_at": now})
    await DeliveryLog(world.db).write([{"_id": f"dead-worker:{world.shop.shop_id}:reminders",
                                        "shop_id": world.shop.shop_id, "flow": "reminders", "at": now,
                                        "items": items}])
    summary = await world.run(now + timedelta(minutes=6))
    assert summary["recovered"] == 2 and summary.get("sent", 0) == 0
    assert len(await world.pushes()) == 2 and len(await world.records()) == 2
    for user in USERS[:2]:
        contact = await world.contact(user)
        assert contact["flows"]["reminders"]["next_step"] == 1 and contact["claim"] is None
        # the dead worker's send counts for attribution and caps all the same
        assert [e["status"] for e in contact["log"]] == ["sent"] and len(contact["sent"]) == 1
    assert (await world.run(now + days(1))).get("sent", 0) == 0


async def test_quota_exhaustion_pauses_the_shop_and_is_reported(world: World) -> None:
    await seed(world, USERS[:2])
    await world.sim.config(monthly_quota=0)
    summary = await world.run(START + days(3))
    assert summary["quota_exhausted"] >= 1 and summary["shops_paused"] == 1 and summary.get("sent", 0) == 0
    report = await world.report()
    assert report["paused_until"] is not None
    assert all(r["due_at"] is not None for r in [await world.reminder(u) for u in USERS[:2]])
    await world.sim.config(monthly_quota=None)
    assert (await world.run(START + days(3, ) + timedelta(minutes=30))).get("sent", 0) == 0  # still paused
    assert (await world.run(START + days(3) + timedelta(hours=2)))["sent"] == 2


async def test_redirect_refuses_unknown_tokens(world: World) -> None:
    for path in ("/r/nothing", "/r/" + "0" * 32 + "-0", "/r/https%3A%2F%2Fevil.example"):
        response = await world.client.get(path, allow_redirects=False)
        assert response.status == 404


async def test_the_due_stream_claims_and_read_back_use_the_due_index(world: World) -> None:
    await seed(world, USERS[:3])
    now = START + days(3)
    repo = ContactRepository(world.db)
    # One cursor for every shop (`run-once --shop` filters the refs it streams), planned on the due index
    # without a hint (a hinted find walks SecantusDB's whole index).
    plan = json.dumps(await repo.due_cursor(now, 10).explain(), default=str)
    assert "COLLSCAN" not in plan and "contact_due" in plan
    assert [r.id async for batch in repo.due_stream(now, world.shop.shop_id, 10) for r in batch] == \
        [r.id async for batch in repo.due_stream(now, None, 10) for r in batch]
    assert [r async for batch in repo.due_stream(now, "shp_other", 10) for r in batch] == []
    refs = await due_refs(repo, now)
    # The claim's filters (SecantusDB's explain of an update ignores its hint, so explain them as finds).
    for claim in ({"next_due_at": refs[0].due, "_id": {"$gte": refs[0].id, "$lte": refs[-1].id}},
                  {"next_due_at": {"$gt": refs[0].due, "$lt": now}}):
        plan = json.dumps(await world.db["contacts"].find(claim).hint("contact_due").explain(), default=str)
        assert "COLLSCAN" not in plan and "contact_due" in plan
    read_back = await world.db.db.command("explain", {"aggregate": "contacts", "pipeline": [
        {"$match": {"next_due_at": now}}], "cursor": {}})
    assert "COLLSCAN" not in json.dumps(read_back, default=str) and "contact_due" in json.dumps(read_back, default=str)


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
        summary: dict[str, Any] = json.loads(out)
        return summary

    results = await asyncio.gather(run_once(), run_once(), run_once())
    sent = [r["jobs"]["delivery"].get("sent", 0) for r in results]
    assert sum(sent) == len(USERS)
    pushes = await world.pushes()
    assert sorted(p["to"] for p in pushes) == sorted(USERS)
    assert all(len(bubbles(p)) == 2 for p in pushes)
