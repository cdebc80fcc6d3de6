"""Background work run at start-up and then every few seconds, stopped by waiting for it - never cancelled.

A sweep cancelled in the middle of its database work leaves that work half
done (and PyMongo leaked the connection it was opening, until
`storage.driver_fixes`). So a `Periodic` is asked to stop, finishes the run it
is in, and only a run still going after `grace` seconds is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("linecrm")


class Periodic:
    def __init__(self, work: Callable[[], Awaitable[object]], interval: float, name: str) -> None:
        self._work = work
        self._interval = interval
        self._name = name
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self._name)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._work()
            except Exception:
                log.exception("%s failed", self._name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def stop(self, grace: float = 30.0) -> None:
        """Let the current run finish (up to `grace` seconds), then no more runs."""
        self._stopping.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            log.warning("%s still running after %.0f s at shutdown: cancelled", self._name, grace)
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1)  # (3.11's wait_for may swallow a cancellation)
