"""The bounded handling pipeline between the webhook's acknowledgement and the handlers.

The acknowledgement only stores events and hands them here, so handling load
can delay handling but never the 200. The pipeline holds at most `capacity`
events (queued or in hand); the webhook `reserve`s room before it stores a
request's events and answers 503 when there is none - LINE redelivers later,
which beats answering late. A fixed number of workers drain it, each taking
whatever has queued up (up to `batch_max`) as one batch.

A sender's events always go to the same worker, and a worker handles one batch
after the other, so one customer's events are handled in order and never
concurrently. Everything here is also in the database (stored, leased): if
the process dies, recovery handles what was queued; when it stops, what was
never started is handed back (`stop` returns it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.shops import Shop
from storage.types import Document

log = logging.getLogger("linecrm.webhook")
REFUSAL_LOG_EVERY_SECONDS = 10.0

Handle = Callable[[Shop, list[Document]], Awaitable[Any]]


@dataclass(frozen=True)
class _Job:
    shop: Shop
    doc: Document


class HandlingPipeline:
    def __init__(self, handle: Handle, *, workers: int = 4, capacity: int = 2000, batch_max: int = 50) -> None:
        self.handle = handle  # replaceable (tests stall it)
        self._capacity = capacity
        self._batch_max = batch_max
        self._queues: list[asyncio.Queue[_Job]] = [asyncio.Queue() for _ in range(workers)]
        self._workers: list[asyncio.Task[None]] = []
        self._reserved = 0
        self.refused = 0  # requests refused because the pipeline was full, since start
        self._refusal_logged_at = -REFUSAL_LOG_EVERY_SECONDS
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def reserved(self) -> int:
        """Events queued or in hand (or reserved by a request still storing them)."""
        return self._reserved

    def reserve(self, events: int) -> bool:
        """Make room for a request's events before storing them; False when full (answer 503).

        An empty pipeline takes any request, however large (LINE sends up to a
        few hundred events in one), so no request is refused forever.
        """
        if self._reserved and self._reserved + events > self._capacity:
            self.refused += 1
            if time.monotonic() - self._refusal_logged_at >= REFUSAL_LOG_EVERY_SECONDS:
                self._refusal_logged_at = time.monotonic()
                log.warning("webhook handling is full (%d events): answering 503 (%d refused so far)",
                            self._reserved, self.refused)
            return False
        self._reserved += events
        self._idle.clear()
        return True

    def unreserve(self, events: int) -> None:
        """Give back room: events that were duplicates, not stored, or handled."""
        self._reserved = max(0, self._reserved - events)
        if self._reserved == 0:
            self._idle.set()

    def lane(self, shop_id: str, sender: str) -> int:
        """The worker that handles this sender's events (always the same one: their order is kept)."""
        return zlib.crc32(f"{shop_id}\x1f{sender}".encode()) % len(self._queues)

    def submit(self, shop: Shop, docs: Sequence[Document]) -> None:
        """Queue stored events (room already reserved); a sender's events always reach the same worker."""
        for doc in docs:
            self._queues[self.lane(shop.shop_id, str(doc.get("user_id") or doc["_id"]))].put_nowait(_Job(shop, doc))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(queue)) for queue in self._queues]

    async def idle(self) -> None:
        """Wait until every event reserved so far was handled (tests; shutdown)."""
        await self._idle.wait()

    async def stop(self, grace: float) -> list[tuple[Shop, Document]]:
        """Let the workers finish for up to `grace` seconds, then stop; returns the events never started."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        left: list[tuple[Shop, Document]] = []
        for queue in self._queues:
            while not queue.empty():
                job = queue.get_nowait()
                left.append((job.shop, job.doc))
        return left

    async def _work(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            jobs = [await queue.get()]
            while len(jobs) < self._batch_max and not queue.empty():
                jobs.append(queue.get_nowait())
            by_shop: dict[str, tuple[Shop, list[Document]]] = {}
            for job in jobs:
                by_shop.setdefault(job.shop.shop_id, (job.shop, []))[1].append(job.doc)
            try:
                await asyncio.gather(*(self._run(shop, docs) for shop, docs in by_shop.values()))
            finally:
                self.unreserve(len(jobs))

    async def _run(self, shop: Shop, docs: list[Document]) -> None:
        try:
            await self.handle(shop, docs)
        except Exception:  # the events stay stored and leased: recovery handles them
            log.exception("handling %d webhook event(s) of shop %s failed", len(docs), shop.shop_id)
