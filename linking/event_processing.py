"""The processor behind the tracking endpoint: stored browser events applied in turns, off the 204's path.

`linking.ingest.acknowledge` stores a group's events and answers; the new
events are handed here and applied by one worker (`linking.ingest.process`),
several acknowledged groups per turn (a turn costs a fixed number of round
trips plus one counter write per browser and product). Each turn waits for
its turn at the database behind the acknowledging inserts
(`storage.group_commit.DatabaseTurn`): the database applies writes one at a
time, and a 204 must not wait behind a counter update.

Nothing here is the only copy: the events are stored before they are handed
over. A full queue, a failed turn or a process stopping leaves them to the
recovery sweep (`recover`), which claims stored batches whose lease ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime

import pymongo
from pymongo.errors import PyMongoError

from linking.ingest import process
from storage.database import Database
from storage.group_commit import DatabaseTurn
from storage.tracking_batches import ClaimLost, TrackingBatchRepository
from storage.types import Document

log = logging.getLogger("linecrm.tracking")

TURN_EVENTS = 50  # events applied per turn (whole acknowledged groups: a batch is finished in one turn)
LINGER_SECONDS = 0.2  # a turn waits this long for more groups: fewer, larger turns, none on the 204's path
# A turn's transaction gives up after this long (the driver would retry a conflicting one for two minutes):
# its events wait for recovery, and the processor goes on with the next ones.
TURN_TIMEOUT_SECONDS = 15.0
CAPACITY_EVENTS = 50_000  # queued beyond this, new groups are left to recovery (their lease runs out)
RECOVERY_BATCH = 20  # stored batches per recovery claim


class EventProcessor:
    def __init__(self, db: Database, now: Callable[[], datetime], turn: DatabaseTurn | None = None, *,
                 turn_events: int = TURN_EVENTS, capacity: int = CAPACITY_EVENTS,
                 linger: float = LINGER_SECONDS) -> None:
        self._db = db
        self._now = now
        self._turn = turn or DatabaseTurn()
        self._turn_events = turn_events
        self._capacity = capacity
        self._linger = linger
        self._queue: deque[list[Document]] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()  # `flush`: skip the linger
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def submit(self, items: list[Document]) -> None:
        """Hand over a group's new events (stored already); over capacity they wait for recovery."""
        if not items:
            return
        if self._queued + len(items) > self._capacity:
            log.warning("browser-event processing is %d events behind; %d left to recovery", self._queued,
                        len(items))
            return
        self._queue.append(items)
        self._queued += len(items)
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def idle(self) -> None:
        """Until everything handed over so far is applied (or left to recovery)."""
        await self._idle.wait()

    async def flush(self) -> None:
        """Apply what is handed over now, without lingering for more (tests, shutdown), and wait for it."""
        self._hurry.set()
        try:
            await self.idle()
        finally:
            self._hurry.clear()

    async def stop(self, grace: float) -> None:
        """Apply what is queued within `grace` seconds; release the rest to recovery at once.

        The worker is asked to stop after its turn, not cancelled (a cancelled database call leaks its
        connection, and Python 3.11's `wait_for` can swallow a cancellation that meets a wake-up, leaving
        the task waiting for good); it is cancelled only if its turn outlives its deadline.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), grace)
        self._stopping = True
        self._wake.set()
        self._hurry.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=TURN_TIMEOUT_SECONDS + 1)
            if not done:
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1)
        left = [item for group in self._queue for item in group]
        self._queue.clear()
        self._queued = 0
        if left:
            with contextlib.suppress(PyMongoError):
                await TrackingBatchRepository(self._db).release(left, self._now())
            log.info("handed %d unprocessed browser event(s) back to recovery", len(left))

    def _take(self) -> list[Document]:
        items: list[Document] = []
        while self._queue and (not items or len(items) + len(self._queue[0]) <= self._turn_events):
            group = self._queue.popleft()
            self._queued -= len(group)
            items.extend(group)
        return items

    async def _work(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            if self._queued < self._turn_events and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self._linger)
            self._wake.clear()
            while self._queue and not self._stopping:
                items = self._take()
                await self.apply(items)
            if not self._queue:
                self._idle.set()

    async def apply(self, items: list[Document]) -> None:
        """One turn: apply `items` (whole stored batches); on failure they wait for recovery."""
        try:
            async with self._turn:
                with pymongo.timeout(TURN_TIMEOUT_SECONDS):
                    await process(self._db, items, self._now())
        except ClaimLost:
            log.info("%d browser event(s) taken over by another processor", len(items))
        except Exception:
            # Not released: the lease running out is the back-off before recovery tries them again.
            log.exception("applying %d browser event(s) failed; left to recovery", len(items))

    async def recover(self) -> int:
        """Claim and apply stored batches whose lease ran out (their processor died, failed or stopped)."""
        repository = TrackingBatchRepository(self._db)
        recovered = 0
        while True:
            items = await repository.claim_expired(self._now(), limit=RECOVERY_BATCH)
            if not items:
                break
            await self.apply(items)
            recovered += len(items)
        if recovered:
            log.info("recovered %d stored browser event(s)", recovered)
        return recovered
