"""Crashes: a process dying after a ledger commit, a worker dying mid-push or mid-way through a monthly run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.typedefs import LINE
from core.line_client import retry_key_for
from flows.points import state
from flows.points.monthly import LEASE, run_id
from flows.points.plan import MONTHLY
from storage.contacts import ContactRepository
from storage.job_runs import JobRuns
from storage.signals import GRACE, OUTBOX
from tests.conftest import START
from tests.flows.points.conftest import World
from tests.flows.points.test_monthly import tokyo

USERS = [f"U{i:032x}" for i in range(1, 6)]
MINUTE = timedelta(minutes=1)


async def test_a_post_whose_process_died_before_its_listener_is_announced_after_the_outbox_drain(
        world: World) -> None:
    await world.settings()
    await world.follow(USERS[0])
    signal = world.db.signals.points_recorded

    async def died(*args: Any) -> None:
        raise RuntimeError("the web process died after the commit")

    signal.disconnect(state.on_points_recorded)
    signal.connect(died)
    await world.earn(USERS[0], "o-1", 100, at=START)
    signal.disconnect(died)
    signal.connect(state.on_points_recorded)
    assert await world.db[OUTBOX].count_documents({}) == 1

    await world.run(START + GRACE / 2)  # the intent is younger than the grace period: the live path may still run
    assert await world.pushes() == []
    summary = await world.run(START + GRACE + MINUTE)
    assert summary["outbox"]["redelivered"] == 1
    assert await world.notices() == [(USERS[0], "100ptを獲得しました(現在 100pt)")]
    assert await world.db[OUTBOX].count_documents({}) == 0


async def test_a_worker_killed_after_pushing_is_not_repeated_even_when_another_earn_came_meanwhile(
        world: World) -> None:
    await world.settings()
    user = USERS[0]
    await world.follow(user)
    await world.earn(user, "o-1", 100, at=START)
    repo = ContactRepository(world.db)
    lease_at = START + MINUTE + timedelta(minutes=5)
    refs = [ref async for batch in repo.due_stream(START + MINUTE, None, 10) for ref in batch]
    await repo.claim(refs, "dead-worker", lease_at, None)
    # The dead worker pushed the notice for the first earn, then died before recording anything.
    line = world.client.app[LINE].for_token(world.shop.channel_access_token)
    key = retry_key_for(world.shop.shop_id, user, "points_earned", "a0", 1)
    await line.push(user, [{"type": "text", "text": "100pt"}], retry_key=key)
    # An earn while the worker held the contact: its listener waits for the outbox.
    await world.earn(user, "o-2", 50, at=START + 2 * MINUTE)
    assert await world.db[OUTBOX].count_documents({}) == 1

    summary = await world.run(START + 10 * MINUTE)  # the lease ran out
    assert summary["delivery"]["already_accepted"] == 1
    assert len(await world.pushes(user)) == 1  # never a second notice counting the first earn again
    for minutes in (13, 20):
        await world.run(START + minutes * MINUTE)
    assert len(await world.pushes(user)) == 1 and await world.db[OUTBOX].count_documents({}) == 0
    assert len(await world.records(flow="points_earned", status="sent")) == 1


async def test_a_monthly_run_whose_worker_died_midway_is_finished_by_another_without_duplicates(
        world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False, monthly_notice=True)
    await world.follow(*USERS)
    for user in USERS:
        await world.earn(user, f"{user}-1", 100, at=tokyo(2037, 12, 5, 12, 0))
    moment = tokyo(2038, 1, 1, 10, 0)
    month = "2038-01"
    # A worker took the run, marked the first two customers' contacts and died.
    assert await JobRuns(world.db).take(run_id(world.shop.shop_id, month), moment, LEASE) is not None
    marked = await ContactRepository(world.db).put_flow_state_many(
        world.shop.shop_id, USERS[:2], MONTHLY, {"month": month, "moment": moment, "due_at": moment},
        due_at=moment, when={f"flows.{MONTHLY}.month": {"$ne": month}})
    assert marked == 2

    summary = await world.run(moment + MINUTE)  # the run is still held: only the marked two go out
    assert summary["points_monthly"] == {} and len(await world.pushes()) == 2
    summary = await world.run(moment + LEASE + MINUTE)  # the lease ran out: another worker finishes it
    assert summary["points_monthly"] == {"shops": 1, "marked": 3}
    assert sorted(to for to, _ in await world.notices()) == USERS
    await world.run(moment + 2 * LEASE)
    assert len(await world.pushes()) == len(USERS)
