"""Exactly once for carts: three worker processes, a worker killed after pushing, racing ingest writes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Any

from bot.typedefs import DATABASE, LINE, SETTINGS
from core.line_client import retry_key_for
from delivery.context import JobContext
from delivery.engine import Engine, EngineConfig, Run
from flows.listeners import delivery_flows
from storage.contacts import ContactRepository
from tests.conftest import START
from tests.flows.carts.conftest import CartWorld, hours, messages, user
from tests.flows.reminders.conftest import due_refs

USERS = [user(500 + i) for i in range(30)]


async def seed(world: CartWorld, users: list[str]) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1", stock=2)
    for n, line_user_id in enumerate(users):
        browser = await world.customer(line_user_id)
        await world.add(START, browser, f"cart-{n}", "p1", quantity=n + 1)


async def test_three_run_once_processes_send_every_cart_reminder_once(world: CartWorld, settings: Any) -> None:
    await seed(world, USERS)
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "LINE_API_BASE": settings.line_api_base, "PUBLIC_BASE_URL": "http://shop-bot.test", "LOG_LEVEL": "WARNING"}

    async def run_once() -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scheduler", "run-once", "--now", (START + hours(3)).isoformat(),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        return dict(json.loads(out))

    results = await asyncio.gather(run_once(), run_once(), run_once())
    assert sum(r["jobs"]["delivery"].get("cart:sent", 0) for r in results) == len(USERS)
    pushes = await world.pushes()
    assert sorted(p["to"] for p in pushes) == sorted(USERS)
    assert len({p["retry_key"] for p in pushes}) == len(USERS)
    for push in pushes:  # each customer got their own cart
        n = USERS.index(push["to"])
        assert f"数量: {n + 1}" in json.dumps(messages(push)[1], ensure_ascii=False)
    assert len(await world.records(status="sent")) == len(USERS)


async def test_a_worker_killed_after_pushing_is_redone_without_a_duplicate(world: CartWorld) -> None:
    await seed(world, USERS[:3])
    now = START + hours(3)
    repo = ContactRepository(world.db)
    lease_at = now + timedelta(minutes=5)
    await repo.claim(await due_refs(repo, now), "dead-worker", lease_at, None)
    claimed = await repo.claimed(lease_at, "dead-worker", [])
    assert len(claimed) == 3
    first = claimed[0]
    token = first["flows"]["cart"]["token"]
    key = retry_key_for(world.shop.shop_id, first["line_user_id"], "cart", token, 1)
    line = world.client.app[LINE].for_token(world.shop.channel_access_token)
    await line.push(first["line_user_id"], [{"type": "text", "text": "partial"}], retry_key=key)

    assert (await world.run(now)).get("contacts", 0) == 0  # leased: nobody else touches them
    summary = await world.run(now + timedelta(minutes=6))
    assert summary["sent"] == 3 and summary["already_accepted"] == 1
    assert len(await world.pushes()) == 3
    assert len(await world.records(status="sent")) == 3
    assert [(await world.journey(u))["status"] for u in USERS[:3]] == ["reminded"] * 3


async def test_an_item_added_while_the_worker_sends_does_not_bring_a_second_reminder(world: CartWorld) -> None:
    await seed(world, USERS[:1])
    (line_user_id,) = USERS[:1]
    browser = f"b-{line_user_id[-6:]}"
    now = START + hours(3)
    app = world.client.app
    ctx = JobContext(database=app[DATABASE], line=app[LINE], settings=app[SETTINGS], worker_id="test")
    run = Run(Engine(delivery_flows(app[SETTINGS].public_base)), ctx, now, None, EngineConfig())
    refs = await due_refs(ContactRepository(world.db), now)
    claimed = await run._claim(refs)
    assert claimed is not None
    token, works = claimed
    # The customer adds to the same cart after the worker planned the reminder and before it settles.
    await world.add(now + timedelta(seconds=1), browser, "cart-0", "p1")
    await run._send_all(works)
    await run._settle(token, works)
    assert run.summary["settle_conflicts"] == 1 and run.summary["sent"] == 1
    journey = await world.journey(line_user_id)
    assert journey["status"] == "reminded" and journey["cart_v"] == 2 and journey["handled"] == ["cart-0"]
    await world.add(now + hours(1), browser, "cart-0", "p1")  # and again, later: still the same cart
    for later in (5, 30, 80):
        assert (await world.run(now + hours(later))).get("sent", 0) == 0
    assert len(await world.pushes()) == 1
