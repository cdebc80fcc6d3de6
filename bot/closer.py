"""Closing handled stored webhook batches: later, a few per statement, behind the acknowledgements.

Closing a stored batch (`WebhookEventRepository.close`) rewrites the batch with
every index entry it has - on the embedded database about 1.3 ms per batch plus
0.4 ms per event it holds (measured: twelve batches of four events, 38 ms in one
statement, and every acknowledgement arriving meanwhile waits behind it). At
300 webhooks/s that was a quarter of the database's time. Nothing waits for it:
what handling did is recorded already (the handling record, written before), an
event's state is read from those records, and a batch its holder never closes
(the process died, or this closer fell behind its lease) is taken by recovery,
which finds every event handled and closes it.

So the closer defers the work out of a burst: each statement closes a few
batches and runs only once the database's other users are `quiet` (the
acknowledging writes idle, then the handling pipeline empty) or after
`patience`, taking the handling's database turn; a batch waiting longer than
`max_delay` is closed without waiting for quiet.
On shutdown what is pending is closed within the grace period, the rest is
left to recovery.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from pymongo.errors import PyMongoError

from storage.group_commit import DatabaseTurn
from storage.webhook_events import Closing, WebhookEventRepository

log = logging.getLogger("linecrm.webhook")

CHUNK = 4  # batches per statement: ~12 ms for batches of four events
PATIENCE_SECONDS = 0.5  # under sustained load: ~2 statements/s, the rest after the burst (or past max_delay)
MAX_DELAY = timedelta(seconds=60)  # well inside the batches' lease (5 min): recovery never has to do it


class BatchCloser:
    def __init__(self, repository: WebhookEventRepository, turn: DatabaseTurn,
                 quiet: Callable[[], Awaitable[object]], now: Callable[[], datetime], *,
                 chunk: int = CHUNK, patience: float = PATIENCE_SECONDS, max_delay: timedelta = MAX_DELAY) -> None:
        self._repository = repository
        self._turn = turn
        self._quiet = quiet
        self._now = now
        self._chunk = chunk
        self._patience = patience
        self._max_delay = max_delay
        self._pending: deque[tuple[datetime, Closing]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self, batches: Sequence[Closing]) -> None:
        """Queue handled batches for closing (their outcomes are recorded already)."""
        if not batches:
            return
        at = self._now()
        self._pending.extend((at, closing) for closing in batches)
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook batch closer")

    async def idle(self) -> None:
        """Until every batch queued so far is closed (tests, benchmarks)."""
        await self._idle.wait()

    async def stop(self, grace: float) -> None:
        """Close what is pending (up to `grace` seconds, without waiting for quiet), then end; the rest is
        left to recovery (their leases run out)."""
        self._stopping = True
        self._stop.set()
        self._wake.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:  # cancelled only past its grace: a cancelled database call may leak its socket (PyMongo)
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1)
        if self._pending:
            log.info("%d handled webhook batch(es) left for recovery to close", len(self._pending))

    async def _quiet_or_stopping(self) -> None:
        """Until the database's other users are quiet, `stop` is called, or `patience` has passed."""
        quiet = asyncio.ensure_future(self._quiet())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({quiet, stopping}, timeout=self._patience, return_when=asyncio.FIRST_COMPLETED)
        finally:  # (waits on events only: nothing of the database is cancelled)
            quiet.cancel()
            stopping.cancel()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._stopping and self._now() - self._pending[0][0] < self._max_delay:
                await self._quiet_or_stopping()
            chunk = [self._pending.popleft()[1] for _ in range(min(self._chunk, len(self._pending)))]
            try:
                async with self._turn:
                    await self._repository.close(chunk, self._now())
            except PyMongoError as exc:  # left to recovery: the batches' leases run out
                log.warning("closing %d handled webhook batch(es) failed: %r", len(chunk), exc)
            except Exception:  # a bug: logged, and the closer goes on (recovery closes these)
                log.exception("closing %d handled webhook batch(es) failed", len(chunk))
