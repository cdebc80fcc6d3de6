"""Pacing calls to LINE: a shared rate limiter for the sender tasks of a run (push, multicast)."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Paces calls to `rate` per second (a small burst allowed), shared by the sender tasks."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self._interval = 1.0 / rate
        self._burst = (burst if burst is not None else max(1.0, rate / 20)) * self._interval
        self._next = time.monotonic()

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(self._next, now - self._burst)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)
