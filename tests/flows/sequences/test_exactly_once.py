"""Exactly once for step sequences: three worker processes, a worker killed mid-batch, replayed signals,
a goal reached while a worker holds the customer."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

from bot.typedefs import LINE
from core.line_client import retry_key_for
from linking.tracking import events_applied
from storage.contacts import ContactRepository
from storage.sequences import SequenceRuns
from storage.signals import OUTBOX
from tests.conftest import START
from tests.flows.sequences.conftest import World, days, hours, minutes, text

USERS = [f"U{i:032x}" for i in range(1, 31)]
TWO_STEPS = {"name": "二段", "trigger": {"event": "follow"},
             "steps": [{"wait_minutes": 60, "messages": [text("1通目 {display_name}")]},
                       {"wait_minutes": 60, "messages": [text("2通目")]}]}


async def test_three_run_once_processes_send_each_step_message_once(world: World, settings: Any) -> None:
    await world.put_sequence("s", TWO_STEPS)
    for user in USERS:
        await world.follow(user, at=START)
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "LINE_API_BASE": settings.line_api_base, "PUBLIC_BASE_URL": "http://shop-bot.test", "LOG_LEVEL": "WARNING"}

    async def run_once(at: Any) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scheduler", "run-once", "--now", at.isoformat(),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        result: dict[str, Any] = json.loads(out)
        return result

    for at, step in ((START + hours(1), "1通目"), (START + hours(2), "2通目")):
        results = await asyncio.gather(run_once(at), run_once(at), run_once(at))
        assert sum(r["jobs"]["delivery"].get("seq:s:sent", 0) for r in results) == len(USERS)
        fresh = await world.new_pushes()
        assert Counter(to for to, _ in fresh) == Counter(USERS)  # each customer once
        assert all(texts[0].startswith(step) for _, texts in fresh)
    records = await world.records("s")
    assert Counter((r["user"], r["step"]) for r in records if r["status"] == "sent") == Counter(
        (user, step) for user in USERS for step in (1, 2))


async def test_a_worker_killed_after_pushing_is_redone_without_a_duplicate(world: World) -> None:
    await world.put_sequence("s", TWO_STEPS)
    for user in USERS[:3]:
        await world.follow(user, at=START)
    now = START + hours(1)
    repo = ContactRepository(world.db)
    lease_at = now + timedelta(minutes=5)
    refs = [ref async for batch in repo.due_stream(now, None, 10) for ref in batch]
    await repo.claim(refs, "dead-worker", lease_at, None)
    claimed = await repo.claimed(lease_at, "dead-worker", [])
    assert len(claimed) == 3
    # The dead worker pushed step 1 to the first customer, then died before recording anything.
    first = claimed[0]
    run = first["flows"]["seq:s"]["run"]
    key = retry_key_for(world.shop.shop_id, first["line_user_id"], "seq:s", run, 1)
    line = world.client.app[LINE].for_token(world.shop.channel_access_token)
    await line.push(first["line_user_id"], [text("1通目")], retry_key=key)

    assert (await world.run(now)).get("contacts", 0) == 0  # leased: nobody else touches them
    summary = await world.run(now + minutes(6))
    assert summary["sent"] == 3 and summary["already_accepted"] == 1
    assert len(await world.pushes()) == 3
    assert sorted(r["user"] for r in await world.records("s") if r["status"] == "sent") == sorted(USERS[:3])


async def test_replayed_signals_start_one_run_and_record_it_once(world: World) -> None:
    await world.follow(USERS[1], at=START)  # before any sequence
    await world.put_sequence("s", {**TWO_STEPS, "reentry": True})
    await world.follow(USERS[0], at=START)
    db = world.db
    # The outbox drain runs an intent again (a crash after the listeners ran): the same run, recorded once.
    for _ in range(2):
        await db.signals.customer_followed.send(db, world.shop.shop_id, USERS[0], False, START, now=START)
    # The same tracking event posted twice (a retried beacon) starts one run.
    await world.put_sequence("v", {**TWO_STEPS, "trigger": {"event": "page_view"}, "reentry": True})
    await world.link("A", USERS[1], START)
    event = {"event_id": "ev-1", "browser_id": world.browser("A"), "type": "page_view",
             "url": "https://shop.example/"}
    for _ in range(2):
        response = await world.client.post(f"/t/{world.shop.shop_id}/events", json=event,
                                           headers={"Origin": "https://shop.example"})
        assert response.status == 204
        await events_applied(world.client.app)
    assert await db["sequence_runs"].count_documents({"sequence_id": "s"}) == 1
    assert await db["sequence_runs"].count_documents({"sequence_id": "v"}) == 1
    await world.run(START + hours(1))
    assert sorted(to for to, _ in await world.new_pushes()) == sorted(USERS[:2])
    assert (await world.report("s"))["entered"] == 1


async def test_a_goal_while_a_worker_holds_the_customer_is_recorded_after_the_worker_settled(world: World) -> None:
    await world.put_sequence("s", {**TWO_STEPS, "goal": {"event": "purchase", "within_days": 7}})
    await world.follow(USERS[0], at=START)
    await world.run(START + hours(1))  # step 1 sent
    now = START + hours(2)
    repo = ContactRepository(world.db)
    lease_at = now + timedelta(minutes=5)
    refs = [ref async for batch in repo.due_stream(now, None, 10) for ref in batch]
    await repo.claim(refs, "slow-worker", lease_at, None)  # a worker holds the customer (step 2 due)
    await world.order(USERS[0], "o1", 2000, now)  # the goal: the run ends at once, its record waits
    assert (await world.run_state(USERS[0], "s"))["status"] == "goal"
    assert await world.db[OUTBOX].count_documents({}) == 1
    summary = await world.run(now + minutes(6))  # the lease ran out: the run has ended, step 2 never goes out
    assert summary.get("sent", 0) == 0 and len(await world.pushes()) == 1
    drained = await world.db.signals.drain(world.db, now + minutes(10))
    assert drained["redelivered"] == 1 and await world.db[OUTBOX].count_documents({}) == 0
    report = await world.report("s")
    assert (report["goal_reached"], report["goal_reached_after_message"], report["conversions"]) == (1, 1, 1)
    assert report["steps"][0]["conversions"] == 1 and report["steps"][0]["revenue"] == 2000


async def test_a_goal_ends_the_run_even_when_it_comes_back_later(world: World) -> None:
    await world.put_sequence("s", {**TWO_STEPS, "goal": {"event": "purchase", "within_days": 1}})
    await world.follow(USERS[0], at=START)
    await world.order(USERS[0], "late", 100, START + days(2))  # after the goal's day: not the goal
    await world.run(START + hours(1))
    await world.run(START + hours(2))
    assert len(await world.pushes()) == 2 and (await world.report("s"))["goal_reached"] == 0


async def test_a_listener_that_dies_after_starting_a_run_is_completed_by_the_outbox(
        world: World, monkeypatch: Any) -> None:
    await world.put_sequence("s", TWO_STEPS)
    real = SequenceRuns.entered
    calls = []

    async def dies_once(self: SequenceRuns, *args: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionError("the process died here")
        await real(self, *args)

    monkeypatch.setattr(SequenceRuns, "entered", dies_once)
    await world.follow(USERS[0], at=START)  # the run is written, its record is not
    assert (await world.run_state(USERS[0], "s"))["status"] == "running"
    assert await world.db["sequence_runs"].count_documents({}) == 0
    assert await world.db[OUTBOX].count_documents({}) == 1  # the signal's intent stays
    drained = await world.db.signals.drain(world.db, START + minutes(2))
    assert drained["redelivered"] == 1 and await world.db["sequence_runs"].count_documents({}) == 1
    await world.run(START + hours(1))
    await world.run(START + hours(2))
    assert [texts for _, texts in await world.new_pushes()] == [[f"1通目 客{USERS[0][-4:]}"], ["2通目"]]
    assert (await world.report("s"))["entered"] == 1
