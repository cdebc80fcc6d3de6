"""Exactly once for broadcasts: a worker killed mid-broadcast, three workers at once, a cancel mid-way,
a start claimed by a worker that died."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from storage.broadcasts import BroadcastRepository, broadcast_key
from storage.leases import new_lease
from tests.conftest import START
from tests.flows.broadcasts.conftest import World, recipients, user


async def audience(world: World, n: int) -> set[str]:
    await world.customers([world.customer_doc(user(i), tags=["vip"]) for i in range(n)])
    await world.segment("vip", {"tags_all": ["vip"]})
    return {user(i) for i in range(n)}


def worker_env(settings: Any) -> dict[str, str]:
    return {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
            "LINE_API_BASE": settings.line_api_base, "PUBLIC_BASE_URL": "http://shop-bot.test", "LOG_LEVEL": "WARNING"}


async def run_once(settings: Any, now: datetime) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scheduler", "run-once", "--now", now.isoformat(), env=worker_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finished(process: asyncio.subprocess.Process) -> dict[str, Any]:
    out, err = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode == 0, err.decode()
    return dict(json.loads(out))


async def test_a_worker_killed_mid_broadcast_resumes_and_nobody_gets_a_second_message(
        world: World, settings: Any) -> None:
    everyone = await audience(world, 3000)  # 6 batches
    await world.broadcast("sale", "vip")
    await world.sim.config(rate_limits={"multicast": 1})  # LINE lets one multicast through per second
    process = await run_once(settings, START)
    for _ in range(600):  # until LINE accepted a first batch, then kill -9 the worker
        if await world.multicasts():
            break
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    accepted = await world.multicasts()
    assert 1 <= len(accepted) < 6
    view = await world.get("sale")
    assert view["status"] == "sending" and view["sent"] < len(everyone)

    await world.sim.config(rate_limits={})
    assert (await world.send(START + timedelta(minutes=1))) == {}  # still leased by the dead worker
    summary = await finished(await run_once(settings, START + timedelta(minutes=6)))  # its lease ran out
    jobs = summary["jobs"]["broadcasts"]
    multicasts = await world.multicasts()
    assert Counter(recipients(multicasts)) == Counter(everyone)  # each customer exactly once
    assert jobs["already_accepted"] >= len(accepted)  # LINE answered 409 for what the dead worker posted
    view = await world.get("sale")
    assert view["status"] == "done" and view["sent"] == len(everyone) and view["batches_done"] == 6
    records = [i async for d in world.db["delivery_log"].find({"flow": "broadcasts"}) for i in d["items"]]
    assert Counter(i["user"] for i in records) == Counter(everyone)  # one record each, no double count


async def test_three_workers_at_once_send_every_batch_once(world: World, settings: Any) -> None:
    everyone = await audience(world, 2600)
    await world.broadcast("sale", "vip")
    processes = [await run_once(settings, START) for _ in range(3)]
    results = [await finished(p) for p in processes]
    assert sum(r["jobs"]["broadcasts"].get("start:started", 0) for r in results) == 1
    assert sum(r["jobs"]["broadcasts"].get("sent", 0) for r in results) == len(everyone)
    assert Counter(recipients(await world.multicasts())) == Counter(everyone)
    assert (await world.get("sale"))["status"] == "done"


async def test_a_cancel_mid_way_leaves_the_rest_unsent(world: World) -> None:
    everyone = await audience(world, 2500)  # 5 batches
    await world.broadcast("sale", "vip")
    await world.start(START)
    await world.sim.faults("multicast", latency_ms=300, count=100)
    sending = asyncio.create_task(world.send(START, group=1, concurrency=1))
    for _ in range(600):
        if await world.multicasts():
            break
        await asyncio.sleep(0.02)
    cancelled = await world.call("POST", "/broadcasts/sale/cancel", 200)
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] is not None
    accepted_at_cancel = len(await world.multicasts())
    summary = await sending
    multicasts = await world.multicasts()
    sent = recipients(multicasts)
    # One batch at a time here: after the cancel, only the one already on its way to LINE can still arrive.
    assert accepted_at_cancel <= len(multicasts) <= accepted_at_cancel + 1 < 5
    assert len(set(sent)) == len(sent)
    assert summary["cancelled"] == len(everyone) - len(sent)
    view = await world.get("sale")
    assert view["status"] == "cancelled" and view["sent"] == len(sent)
    assert view["sent"] + view["unsent"] == view["targeted"] == len(everyone)
    assert (await world.send(START + timedelta(minutes=10))) == {}  # the rest never goes
    assert recipients(await world.multicasts()) == sent
    assert (await world.call("POST", "/broadcasts/sale/cancel", 200))["status"] == "cancelled"


async def test_a_scheduled_broadcast_can_be_cancelled_and_a_done_one_cannot(world: World) -> None:
    await audience(world, 3)
    await world.broadcast("later", "vip", send_at=(START + timedelta(days=1)).isoformat())
    assert (await world.call("POST", "/broadcasts/later/cancel", 200))["status"] == "cancelled"
    assert await world.run(START + timedelta(days=2)) == {}
    await world.broadcast("now", "vip")  # at the clock's moment: two days later
    await world.run(START + timedelta(days=2))
    conflict = await world.call("POST", "/broadcasts/now/cancel", 409)
    assert conflict["error"]["code"] == "conflict"
    assert len(await world.multicasts()) == 1


async def test_a_start_claimed_by_a_worker_that_died_is_started_once_its_lease_runs_out(world: World) -> None:
    everyone = await audience(world, 700)
    await world.broadcast("sale", "vip")
    repo = BroadcastRepository(world.db)
    lease = new_lease(START, timedelta(minutes=5))
    await repo.starts.claim([r async for batch in repo.starts.due_stream(START, None, 10) for r in batch], lease, None)
    assert len(await repo.starts.claimed(lease)) == 1  # ... and the worker died before freezing
    assert await world.run(START + timedelta(minutes=1)) == {}
    summary = await world.run(START + timedelta(minutes=6))
    assert summary["start:started"] == 1 and summary["sent"] == len(everyone)
    # A second freeze of the same broadcast (a worker that lost its lease) changes nothing.
    assert not await repo.freeze(broadcast_key(world.shop.shop_id, "sale"), lease.token, sorted(everyone), START)
    assert await world.db["broadcast_batches"].count_documents({}) == 2
