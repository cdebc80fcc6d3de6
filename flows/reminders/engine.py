"""The browse-reminder job: select due customers, claim them in batches, plan, push, record, advance.

Exactly once: a batch is claimed with `update_many` (claim token + lease,
precondition "due and not leased") and read back by token; every push carries
a retry key derived from (shop, customer, cycle, step), so a worker killed
mid-batch loses nothing (its lease expires, another worker redoes the batch)
and duplicates nothing (LINE answers 409 = already sent, and a delivery record
found for the step means "advance without pushing"). Planning of the next
batch overlaps the sends of the current one; sends are paced per shop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.clock import SystemClock, as_utc
from core.line_client import LineApiError, QuotaExhausted
from delivery.context import JobContext, JobSummary
from flows.reminders.plan import CAMPAIGN, Planned, Planner
from storage.deliveries import DeliveryRepository
from storage.reminders import ReminderPauses, ReminderStateRepository, Settlement

log = logging.getLogger("linecrm.reminders")

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class EngineConfig:
    batch_size: int = 500
    lease: timedelta = timedelta(minutes=5)
    send_rate: float = 1_000.0  # pushes per second per shop (LINE allows 2,000/s per channel)
    concurrency: int = 64  # pushes in flight per worker
    retry_delay: timedelta = timedelta(minutes=5)  # after a push that got no answer
    wall_clock: Callable[[], datetime] = field(default=SystemClock().now)  # leases are about real time


DEFAULT_CONFIG = EngineConfig()
# (delivery record or None, reminder fields to set, when a push went out or None)
Outcome = tuple[dict[str, Any] | None, dict[str, Any], datetime | None]


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


class Run:
    """One run of the job at one moment."""

    def __init__(self, ctx: JobContext, now: datetime, shop_id: str | None, config: EngineConfig) -> None:
        self.ctx, self.now, self.shop_id, self.config = ctx, now, shop_id, config
        self.db = ctx.database
        self.state = ReminderStateRepository(self.db)
        self.deliveries = DeliveryRepository(self.db)
        self.planner = Planner(self.db, ctx.settings.public_base)
        self.summary: Counter[str] = Counter()
        self.paused: set[str] = set()
        self.limiters: dict[str, RateLimiter] = {}
        self.semaphore = asyncio.Semaphore(config.concurrency)

    async def execute(self) -> JobSummary:
        self.paused.update(await ReminderPauses(self.db).paused_shops(self.now))
        token = secrets.token_hex(12)
        sending: tuple[list[Planned], asyncio.Task[list[Outcome]]] | None = None
        recording: list[asyncio.Task[None]] = []
        try:
            # One streaming cursor over the due set for the whole run: memory stays one batch,
            # and the database is asked once (a `limit` query per batch re-reads the whole set).
            async for refs in self.state.due_stream(self.now, self.shop_id, self.config.batch_size):
                if self.shop_id is not None and self.shop_id in self.paused:
                    break
                wall = self.config.wall_clock()
                refs = [r for r in refs if r.shop_id not in self.paused
                        and (r.lease_until is None or as_utc(r.lease_until) <= wall)]
                if not refs:
                    continue
                claimed = await self.state.claim([r.id for r in refs], token, self.now, wall,
                                                 wall + self.config.lease)
                if not claimed:
                    continue  # another worker took them
                # A lease that ran out means a run died mid-batch: only those may have a recorded step.
                recovering = {r.id for r in refs if r.lease_until is not None}
                planned = await self.planner.plan(claimed, self.now, recovering)
                # Pipeline: plan batch N+1 while N is sent and N-1 recorded; at most two batches wait.
                if sending is not None:
                    recording.append(asyncio.create_task(self._settle(sending[0], await sending[1], token)))
                sending = (planned, asyncio.create_task(self._send_all(planned)))
                while len(recording) > 1:
                    await recording.pop(0)
        finally:
            if sending is not None:
                recording.append(asyncio.create_task(self._settle(sending[0], await sending[1], token)))
            for task in recording:
                await task
        if self.paused:
            self.summary["shops_paused"] = len(self.paused)
        return dict(self.summary)

    async def _send_all(self, planned: list[Planned]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._handle(item) for item in planned)))

    async def _settle(self, planned: list[Planned], results: list[Outcome], token: str) -> None:
        """Record deliveries first, then advance: a crash in between is recovered by the record."""
        await self.deliveries.record_many(record for record, _, _ in results if record is not None)
        settle = [Settlement(item.customer["_id"], token, item.cycle_id, fields, sent_at)
                  for item, (_, fields, sent_at) in zip(planned, results, strict=True)]
        await self.state.settle(settle, self.now)

    def _record(self, item: Planned, status: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
        decision = item.decision
        assert item.delivery_id is not None and decision.step is not None
        return {
            "_id": item.delivery_id, "shop_id": item.shop_id, "key": item.key, "campaign": CAMPAIGN,
            "step": decision.step + 1, "line_user_id": item.line_user_id, "cycle_id": item.cycle_id,
            "status": status, "reason": reason, "at": self.now, "due_at": decision.due_at,
            "superseded_steps": [s + 1 for s in decision.superseded],
            "products": [{"product_id": s.product_id, "reason": s.reason}
                         for s in (decision.choice.shown if decision.choice else [])],
            "clicks": 0, **extra,
        }

    async def _handle(self, item: Planned) -> Outcome:
        """(delivery record or None, reminder fields to settle) for one customer."""
        decision = item.decision
        self.summary["customers"] += 1
        if item.recorded is not None:  # a crashed run recorded this step but did not advance
            self.summary["recovered"] += 1
            sent_at = item.recorded.get("sent_at") if item.recorded.get("status") == "sent" else None
            return None, decision.state if decision.kind in ("send", "skip") else {}, sent_at
        if decision.kind == "skip":
            self.summary[f"skipped:{decision.reason}"] += 1
            return self._record(item, "skipped", decision.reason), decision.state, None
        if decision.kind != "send":
            self.summary[decision.kind] += 1
            return None, decision.state, None
        if item.shop_id in self.paused:
            self.summary["held:quota"] += 1
            return None, {}, None
        return await self._push(item)

    async def _push(self, item: Planned) -> Outcome:
        catalogue = self.planner.catalogue(item.shop_id)
        assert catalogue is not None and item.message is not None and item.delivery_id is not None
        limiter = self.limiters.setdefault(item.shop_id, RateLimiter(self.config.send_rate))
        client = self.ctx.line.for_token(catalogue.shop.line.channel_access_token)
        attempts = int((item.customer.get("reminder") or {}).get("attempts") or 0) + 1
        async with self.semaphore:
            await limiter.acquire()
            try:
                result = await client.push_json(item.line_user_id, [item.message], retry_key=item.delivery_id)
            except QuotaExhausted as exc:
                self.paused.add(item.shop_id)
                await ReminderPauses(self.db).pause(item.shop_id, self.now, "monthly_quota")
                self.summary["quota_exhausted"] += 1
                log.error("shop %s: LINE monthly quota exhausted (%s); reminders paused", item.shop_id, exc.status)
                return None, {}, None
            except LineApiError as exc:
                if exc.status is not None and 400 <= exc.status < 500 or attempts >= MAX_ATTEMPTS:
                    self.summary["failed"] += 1
                    log.warning("shop %s: reminder push failed for good (status %s)", item.shop_id, exc.status)
                    return (self._record(item, "failed", f"line_{exc.status or 'no_answer'}", sent_at=None),
                            item.decision.state, None)
                self.summary["retry_later"] += 1
                return None, {"attempts": attempts, "next_due_at": self.now + self.config.retry_delay * attempts}, None
        self.summary["sent"] += 1
        if result.already_accepted:
            self.summary["already_accepted"] += 1
        return (self._record(item, "sent", None, sent_at=self.now, request_id=result.request_id,
                             already_accepted=result.already_accepted), item.decision.state, self.now)


async def run_reminders(ctx: JobContext, now: datetime, shop_id: str | None = None,
                        config: EngineConfig = DEFAULT_CONFIG) -> JobSummary:
    return await Run(ctx, now, shop_id, config).execute()
