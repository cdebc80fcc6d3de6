"""Handled stored batches are closed later, a few per statement, behind the acknowledgements - and one never
closed (its process stopped first) is closed by recovery without its events being handled again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from pymongo.errors import AutoReconnect

from bot.closer import BatchCloser
from bot.typedefs import DATABASE, WEBHOOK_CLOSER, WEBHOOK_PIPELINE
from core.clock import FixedClock
from linesim import webhook as events
from linesim.client import SimClient
from storage.database import Database
from storage.group_commit import DatabaseTurn
from storage.webhook_events import COLLECTION, LEASE, Closing, WebhookEventRepository
from tests.bot.conftest import USER, recover
from tests.conftest import ShopHandle


class _Counting(WebhookEventRepository):
    """The repository, remembering how many batches each closing statement carried."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.statements: list[int] = []

    async def close(self, batches: Sequence[Closing], now: datetime) -> None:
        self.statements.append(len(batches))
        await super().close(batches, now)


class _Quiet:
    """Whether the database's other users (acknowledgements, handling) are quiet, as the test sets it."""

    def __init__(self) -> None:
        self.quiet = asyncio.Event()

    async def idle(self) -> None:
        await self.quiet.wait()


async def _stored(repository: WebhookEventRepository, shop: ShopHandle, now: datetime, count: int) -> list[Closing]:
    closings: list[Closing] = []
    for n in range(count):
        stored = await repository.store(shop.shop_id, [events.text_message_event(USER, f"m{n}")], now)
        closings.append(Closing(stored.new[0]["batch"], stored.claim, complete=True))
    return closings


async def _states(db: Database, closings: Sequence[Closing]) -> list[str]:
    return [str((await db[COLLECTION].find_one({"_id": c.batch}) or {}).get("state")) for c in closings]


async def test_batches_are_closed_a_few_per_statement_each_after_the_other_work_had_its_chance(
    db: Database, shop: ShopHandle, clock: FixedClock
) -> None:
    repository = _Counting(db)
    closings = await _stored(repository, shop, clock.now(), 10)
    others = _Quiet()  # never quiet: each statement waits its patience
    closer = BatchCloser(repository, DatabaseTurn(), others.idle, clock.now, chunk=4, patience=0.1)
    closer.start()
    started = time.perf_counter()
    closer.close(closings)
    assert closer.pending == 10
    await asyncio.wait_for(closer.idle(), 10)
    waited = time.perf_counter() - started
    assert repository.statements == [4, 4, 2]
    assert waited >= 0.3  # three statements, each behind a patience of 0.1 s
    assert await _states(db, closings) == ["done"] * 10
    await closer.stop(5)
    # Quiet: no waiting for the patience (here 5 s) at all.
    more = await _stored(repository, shop, clock.now(), 3)
    others.quiet.set()
    patient = BatchCloser(repository, DatabaseTurn(), others.idle, clock.now, chunk=4, patience=5)
    patient.start()
    started = time.perf_counter()
    patient.close(more)
    await asyncio.wait_for(patient.idle(), 10)
    assert time.perf_counter() - started < 2.5
    assert await _states(db, more) == ["done"] * 3
    await patient.stop(5)


async def test_a_batch_waiting_past_the_longest_delay_no_longer_waits_for_quiet(
    db: Database, shop: ShopHandle, clock: FixedClock
) -> None:
    repository = _Counting(db)
    late, held = await _stored(repository, shop, clock.now(), 2), await _stored(repository, shop, clock.now(), 2)
    closer = BatchCloser(repository, DatabaseTurn(), _Quiet().idle, clock.now, patience=30,
                         max_delay=timedelta(seconds=60))
    closer.close(late)
    clock.advance(timedelta(seconds=61))
    closer.start()
    await asyncio.wait_for(closer.idle(), 5)  # not 30 s: they waited long enough
    assert await _states(db, late) == ["done", "done"]
    closer.close(held)
    await asyncio.sleep(0.2)
    assert closer.pending == 2  # waiting for quiet
    started = time.perf_counter()
    await closer.stop(5)  # stopping closes what is pending at once
    assert time.perf_counter() - started < 2 and closer.pending == 0
    assert await _states(db, held) == ["done", "done"]


async def test_a_closing_that_fails_leaves_the_batch_to_recovery_and_the_closer_goes_on(
    db: Database, shop: ShopHandle, clock: FixedClock
) -> None:
    class Failing(_Counting):
        async def close(self, batches: Sequence[Closing], now: datetime) -> None:
            if not self.statements:
                self.statements.append(-1)
                raise AutoReconnect("connection lost")
            await super().close(batches, now)

    repository = Failing(db)
    first, second = await _stored(repository, shop, clock.now(), 1), await _stored(repository, shop, clock.now(), 1)
    closer = BatchCloser(repository, DatabaseTurn(), _Quiet().idle, clock.now, patience=0)
    closer.start()
    closer.close(first)
    await asyncio.wait_for(closer.idle(), 10)
    closer.close(second)
    await asyncio.wait_for(closer.idle(), 10)
    await closer.stop(5)
    assert await _states(db, first) == ["handling"]  # its lease runs out: recovery closes it
    assert await _states(db, second) == ["done"]


async def test_a_batch_its_process_never_closed_is_closed_by_recovery_without_answering_again(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, clock: FixedClock, bot_url: str
) -> None:
    app = client.app
    await app[WEBHOOK_CLOSER].stop(0)  # this process will not close anything (as if it died after handling)
    answer = await sim.webhook(bot_url, shop.channel_secret, events=[{"type": "text", "user_id": USER,
                                                                      "text": "配信停止"}])
    assert answer["status"] == 200
    await app[WEBHOOK_PIPELINE].idle()
    repository = WebhookEventRepository(app[DATABASE])
    event_id = answer["events"][0]["webhookEventId"]
    doc = await repository.get(shop.shop_id, event_id)
    assert doc is not None and doc["state"] == "done"  # the event is handled: its outcome is recorded
    assert await repository.waiting() == 1  # ... but its stored batch is still open
    assert len(await sim.messages(to=USER)) == 1
    clock.advance(LEASE)
    assert await recover(app) == 0  # nothing to handle again
    assert await repository.waiting() == 0
    assert len(await sim.messages(to=USER)) == 1
