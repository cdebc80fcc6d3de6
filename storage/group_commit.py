"""Group commit: the writes of concurrent requests go to the database together.

The embedded database applies writes one at a time and charges about a
millisecond per round trip, so 300 requests a second each writing alone queue
behind each other; written together they cost a few bulk round trips. A caller
`submit`s its items and awaits its own results; a flusher takes everything
pending (up to `max_items`, whole submissions only), optionally after a short
`window` that lets a few more arrive, and hands it to `write` in one call.
At most `max_in_flight` writes run at once; what arrives meanwhile waits for
the next one, so batches grow with load and a lone request waits only for its
own write (plus the window).

`write` gets the items in submission order and returns one result per item;
if it raises, every submission of that group gets the exception. A caller
that stops waiting does not stop the write (it may already be applied).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[list[T]], Awaitable[Sequence[R]]]


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Write[T, R], *, max_items: int = 500, window: float = 0.0,
                 max_in_flight: int = 1) -> None:
        self._write = write
        self._max_items = max_items
        self._window = window
        self._max_in_flight = max_in_flight
        self._pending: deque[tuple[list[T], asyncio.Future[list[R]]]] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._waiting = False  # a flusher is sleeping out the window
        self._idle = asyncio.Event()  # nothing pending, nothing being written
        self._idle.set()

    @property
    def pending(self) -> int:
        """Submissions not yet handed to a write."""
        return len(self._pending)

    async def submit(self, items: Sequence[T]) -> list[R]:
        if not items:
            return []
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._pending.append((list(items), future))
        self._idle.clear()
        self._kick()
        return await asyncio.shield(future)

    def _kick(self) -> None:
        if self._pending and not self._waiting and len(self._running) < self._max_in_flight:
            task = asyncio.get_running_loop().create_task(self._flush())
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._kick()
        if not self._running and not self._pending:
            self._idle.set()

    async def idle(self) -> None:
        """Wait until nothing is pending or being written (others may then use the database first)."""
        await self._idle.wait()

    async def _flush(self) -> None:
        if self._window > 0:
            self._waiting = True
            try:
                await asyncio.sleep(self._window)
            finally:
                self._waiting = False
        group: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        size = 0
        while self._pending and (not group or size + len(self._pending[0][0]) <= self._max_items):
            entry = self._pending.popleft()
            group.append(entry)
            size += len(entry[0])
        if not group:
            return
        self._kick()  # room for another write in flight: let it take what is left
        items = [item for entry in group for item in entry[0]]
        try:
            results = list(await self._write(items))
        except BaseException as exc:  # every caller of this group learns why; cancellation too
            for _, future in group:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
            return
        if len(results) != len(items):
            error = RuntimeError(f"group write returned {len(results)} results for {len(items)} items")
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        offset = 0
        for entry_items, future in group:
            if not future.done():
                future.set_result(results[offset:offset + len(entry_items)])
            offset += len(entry_items)

    async def close(self) -> None:
        """Wait for the writes in flight (the process is stopping); new submissions still work until then."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)


class DatabaseTurn:
    """Background work's turns at the database, one at a time, each behind the acknowledging writes then waiting.

    The database applies writes one at a time: every background write queued in front of an acknowledging
    group commit delays a 200. A turn starts once the group commit is idle (`acknowledgements_idle`), or after
    `patience`, so the background work still progresses under sustained load.
    """

    def __init__(self, acknowledgements_idle: Callable[[], Awaitable[object]] | None = None,
                 patience: float = 0.025) -> None:
        self._lock = asyncio.Lock()
        self._acknowledgements_idle = acknowledgements_idle
        self._patience = patience

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        if self._acknowledgements_idle is not None:
            try:
                await asyncio.wait_for(self._acknowledgements_idle(), self._patience)
            except TimeoutError:
                pass  # handling must progress under sustained load too
            except BaseException:
                self._lock.release()
                raise

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
