"""The broadcast worker: starts due broadcasts (freezes their audience) and multicasts their batches, exactly once.

Start: scheduled broadcasts are a leased collection keyed by `send_at`; a worker claims the due ones,
evaluates each one's segment (`storage.segments`, reachable friends only) and freezes it in one
transaction (`BroadcastRepository.freeze`): batches of at most 500 sorted LINE user IDs, due now.

Send: the batches are a leased collection too. A run streams the due batches and, a group at a time:
claims a slice of the due order (a token and a lease moment) → reads it back → plans each batch that has
no plan yet (`plan.plan_batch`: the delivery policy per recipient, at send time) and stores the plans →
checks that the broadcasts are still sending (a cancel stops every batch not yet posted) → multicasts each
batch with its deterministic retry key, paced to LINE's multicast limit per channel → writes one record
document per batch (delivery log, flow "broadcasts"), adds each batch's figures to its broadcast once,
and settles the batches conditionally on the claim. The next group is planned while one is posted and the
one before is settled.

Exactly once: a worker killed anywhere leaves its batches leased; once the lease runs out another run
takes them, finds the stored plan and posts the same request with the same retry key — LINE answers 409
for one it accepted, counted as sent — and the records, the figures and the settle are idempotent (the
record's `_id` and the counted `seq` are the batch's). A cancel between a plan and its post wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from core.clock import as_utc
from core.line_client import LineApiError, QuotaExhausted, retry_key_for
from delivery.clicks import click_secret
from delivery.context import JobContext, JobSummary
from delivery.engine import ShopInfo, shop_infos
from delivery.pacing import RateLimiter
from flows.broadcasts.messages import with_click_links
from flows.broadcasts.plan import FLOW, Plan, broadcast_intent, plan_batch
from storage import keys
from storage.broadcasts import BroadcastRepository
from storage.customers import CustomerRepository
from storage.database import Database, Document, find_by_ids
from storage.delivery_log import DeliveryLog
from storage.keys import customer_key
from storage.leases import NEVER, Conditional, DueRef, Lease, new_lease
from storage.pauses import ShopPauses
from storage.segments import SegmentFilter, audience_query, members

log = logging.getLogger("linecrm.broadcasts")

Outcome = Literal["sent", "failed", "retry", "paused", "cancelled"]


@dataclass(frozen=True)
class BroadcastConfig:
    group: int = 20  # batches claimed, planned and sent together (10,000 recipients)
    lease: timedelta = timedelta(minutes=5)  # batches not settled by then are taken over by another run
    multicast_rate: float = 200.0  # multicast requests per second per channel (LINE's limit)
    concurrency: int = 16  # multicasts in flight per worker
    retry_delay: timedelta = timedelta(minutes=1)  # after a multicast that got no answer (× attempts)
    max_attempts: int = 5
    # Customers who became unreachable this long before a freeze are checked too (clocks of processes differ).
    reach_margin: timedelta = timedelta(hours=1)
    starts: int = 20  # scheduled broadcasts claimed together


DEFAULT_CONFIG = BroadcastConfig()


def broadcast_delivery_key(shop_id: str, broadcast_id: str) -> str:
    """Names a broadcast's records, click links and conversions (one message set for everyone)."""
    return retry_key_for(shop_id, FLOW, broadcast_id)


def batch_retry_key(shop_id: str, broadcast_id: str, seq: int) -> str:
    """The one retry key of one batch's multicast: the same in every worker, on every retry."""
    return retry_key_for(shop_id, FLOW, broadcast_id, "batch", seq)


# --- start: freeze the audience ---

async def start_due(ctx: JobContext, now: datetime, shop_id: str | None,
                    config: BroadcastConfig = DEFAULT_CONFIG) -> JobSummary:
    """Freeze every scheduled broadcast whose moment has come."""
    repo = BroadcastRepository(ctx.database)
    summary: Counter[str] = Counter()
    async for refs in repo.starts.due_stream(now, shop_id, config.starts):
        lease = new_lease(now, config.lease)
        await repo.starts.claim(refs, lease, shop_id)
        for broadcast in await repo.starts.claimed(lease):
            await _start(ctx.database, repo, broadcast, lease, now, summary)
    return dict(summary)


async def _start(database: Database, repo: BroadcastRepository, broadcast: Document, lease: Lease, now: datetime,
                 summary: Counter[str]) -> None:
    shop_id = str(broadcast["shop_id"])
    if (await shop_infos(database, [shop_id])).get(shop_id) is None:
        await repo.cancel(shop_id, str(broadcast["broadcast_id"]), now)
        summary["cancelled:unknown_shop"] += 1
        return
    spec = SegmentFilter.model_validate(broadcast.get("filter") or {})
    audience = await members(database, audience_query(shop_id, spec, now))
    if await repo.freeze(broadcast["_id"], lease.token, audience, now):
        summary["started"] += 1
        summary["frozen"] += len(audience)
        log.info("broadcast %s of shop %s started: %d recipients", broadcast["broadcast_id"], shop_id, len(audience))
    else:
        summary["start_lost"] += 1  # cancelled meanwhile, or another worker's lease


# --- send: the batches ---

@dataclass
class Batch:
    """One claimed batch through planning, sending and settling."""

    doc: Document
    broadcast: Document | None
    plan: Plan | None = None
    planned_now: bool = False
    outcome: Outcome | None = None
    line_status: int | None = None
    request_id: str | None = None
    already_accepted: bool = False

    @property
    def id(self) -> str:
        return str(self.doc["_id"])

    @property
    def shop_id(self) -> str:
        return str(self.doc.get("shop_id") or "")

    @property
    def users(self) -> list[str]:
        return list(self.doc.get("users") or [])


@dataclass
class Group:
    lease: Lease
    batches: list[Batch] = field(default_factory=list)


async def send_due(ctx: JobContext, now: datetime, shop_id: str | None,
                   config: BroadcastConfig = DEFAULT_CONFIG) -> JobSummary:
    """Multicast every due batch once."""
    return await BatchRun(ctx, as_utc(now), shop_id, config).execute()


class BatchRun:
    """One run over the due batches at one moment (its caches live for the run only)."""

    def __init__(self, ctx: JobContext, now: datetime, shop_id: str | None, config: BroadcastConfig) -> None:
        self.ctx, self.now, self.shop_id, self.config = ctx, now, shop_id, config
        self.db = ctx.database
        self.repo = BroadcastRepository(self.db)
        self.records = DeliveryLog(self.db)
        self.pauses = ShopPauses(self.db)
        self.summary: Counter[str] = Counter()
        self.paused: set[str] = set()
        self.shops: dict[str, ShopInfo | None] = {}
        self.limiters: dict[str, RateLimiter] = {}
        self.semaphore = asyncio.Semaphore(config.concurrency)
        self.messages: dict[str, list[dict[str, Any]]] = {}  # per broadcast, with click links
        self.changed: dict[tuple[str, datetime], dict[str, Document]] = {}  # (shop, since) → customers

    async def execute(self) -> JobSummary:
        self.paused.update(await self.pauses.paused_shops(self.now))
        sending: tuple[Group, asyncio.Task[None]] | None = None
        settling: list[asyncio.Task[None]] = []
        try:
            async for refs in self.repo.batches.due_stream(self.now, self.shop_id, self.config.group):
                group = await self._prepare([r for r in refs if r.shop_id not in self.paused])
                if group is None:
                    continue
                # Pipeline: plan group N+1 while N is posted and N-1 settled (at most two groups wait).
                if sending is not None:
                    await sending[1]
                    settling.append(asyncio.create_task(self._settle(sending[0])))
                sending = (group, asyncio.create_task(self._send(group)))
                while len(settling) > 1:
                    await settling.pop(0)
        finally:
            if sending is not None:
                await sending[1]
                settling.append(asyncio.create_task(self._settle(sending[0])))
            for task in settling:
                await task
        if self.paused:
            self.summary["shops_paused"] = len(self.paused)
        return dict(self.summary)

    # --- claim, read back, plan ---

    async def _prepare(self, refs: list[DueRef]) -> Group | None:
        if not refs:
            return None
        lease = new_lease(self.now, self.config.lease)
        await self.repo.batches.claim(refs, lease, self.shop_id)
        docs = await self.repo.batches.claimed(lease)
        if not docs:
            return None
        broadcasts = await self.repo.get_many(sorted({str(d["bkey"]) for d in docs}))
        await self._ensure_shops({str(d.get("shop_id") or "") for d in docs})
        group = Group(lease, [Batch(doc, broadcasts.get(str(doc["bkey"]))) for doc in docs])
        for batch in group.batches:
            if batch.doc.get("plan") is not None:
                batch.plan = Plan.from_doc(batch.doc["plan"], batch.users)
            elif self._sendable(batch):
                batch.plan, batch.planned_now = await self._plan(batch), True
        planned = [Conditional(b.id, lease.token, {"$set": {"plan": b.plan.as_doc()}}, {"plan": None})
                   for b in group.batches if b.planned_now and b.plan is not None]
        await self.repo.batches.write(planned)
        return group

    def _sendable(self, batch: Batch) -> bool:
        broadcast = batch.broadcast
        return (broadcast is not None and broadcast.get("status") == "sending"
                and self.shops.get(batch.shop_id) is not None)

    async def _ensure_shops(self, shop_ids: set[str]) -> None:
        missing = sorted(s for s in shop_ids if s not in self.shops)
        if missing:
            self.shops.update(await shop_infos(self.db, missing, self.now))

    async def _plan(self, batch: Batch) -> Plan:
        broadcast, info = batch.broadcast, self.shops[batch.shop_id]
        assert broadcast is not None and info is not None
        since = as_utc(broadcast["started_at"]) - self.config.reach_margin
        changed = self.changed.get((batch.shop_id, since))
        if changed is None:
            changed = self.changed[(batch.shop_id, since)] = await CustomerRepository(self.db).reachability_changed(
                batch.shop_id, since)
        sends = await self._sends(batch, info)
        intent = broadcast_intent(str(broadcast["broadcast_id"]), str(broadcast["key"]), self.now)
        return plan_batch(batch.shop_id, batch.users, intent, changed, lambda user: sends.get(user, []), info.policy,
                          info.shop.timezone, self.now)

    async def _sends(self, batch: Batch, info: ShopInfo) -> dict[str, list[datetime]]:
        """Each member's earlier sends in every flow, when the shop caps them (else nothing is read): the
        contacts' sends (per-customer flows) and the shop's other broadcasts (`info.exposures`)."""
        if info.policy.per_day is None and info.policy.per_week is None:
            return {}
        exposures = info.exposures
        contacts = await find_by_ids(self.db["contacts"], [customer_key(batch.shop_id, u) for u in batch.users],
                                     {"line_user_id": 1, "sent": 1})
        sends = {str(c.get("line_user_id")): [as_utc(e["at"]) for e in c.get("sent") or [] if e.get("at")]
                 for c in contacts}
        return {user: sends.get(user, []) + exposures.of(user) for user in batch.users}

    # --- send, record, count, settle ---

    async def _send(self, group: Group) -> None:
        live = await self.repo.get_many(sorted({str(b.doc["bkey"]) for b in group.batches}))  # a cancel wins
        for batch in group.batches:
            current = live.get(str(batch.doc["bkey"]))
            if current is None or current.get("status") != "sending" or batch.plan is None \
                    or self.shops.get(batch.shop_id) is None:
                batch.outcome = "cancelled"
        await asyncio.gather(*(self._multicast(b) for b in group.batches if b.outcome is None))

    async def _multicast(self, batch: Batch) -> None:
        plan, broadcast, info = batch.plan, batch.broadcast, self.shops.get(batch.shop_id)
        assert plan is not None and broadcast is not None and info is not None
        if not plan.to:
            batch.outcome = "sent"  # nobody to send to (all held or skipped): nothing to post
            return
        messages = self._messages(broadcast, info)
        client = self.ctx.line.for_token(info.shop.line.channel_access_token)
        limiter = self.limiters.setdefault(batch.shop_id, RateLimiter(self.config.multicast_rate, burst=1))
        key = batch_retry_key(batch.shop_id, str(broadcast["broadcast_id"]), int(batch.doc["seq"]))
        async with self.semaphore:
            await limiter.acquire()
            if batch.shop_id in self.paused:
                batch.outcome = "paused"
                return
            try:
                result = await client.multicast_json(plan.to, messages, retry_key=key)
            except QuotaExhausted:
                batch.outcome = "paused"
                if batch.shop_id not in self.paused:
                    self.paused.add(batch.shop_id)
                    await self.pauses.pause(batch.shop_id, self.now, "monthly_quota")
                    self.summary["quota_exhausted"] += 1
                    log.error("shop %s: LINE monthly quota exhausted; broadcasts paused", batch.shop_id)
                return
            except LineApiError as exc:
                attempts = int(batch.doc.get("attempts") or 0) + 1
                refused = exc.status is not None and 400 <= exc.status < 500 and exc.status != 429  # 429: later
                if refused or attempts >= self.config.max_attempts:
                    batch.outcome, batch.line_status = "failed", exc.status
                    log.warning("shop %s: broadcast batch %s failed for good (status %s)", batch.shop_id, batch.id,
                                exc.status)
                else:
                    batch.outcome = "retry"
                return
        batch.outcome, batch.request_id, batch.already_accepted = "sent", result.request_id, result.already_accepted

    def _messages(self, broadcast: Document, info: ShopInfo) -> list[dict[str, Any]]:
        bkey = str(broadcast["_id"])
        if bkey not in self.messages:
            self.messages[bkey] = with_click_links(
                list(broadcast.get("messages") or []), self.ctx.settings.public_base,
                click_secret(info.shop.line.channel_secret), info.shop.shop_id, FLOW, str(broadcast["key"]))
        return self.messages[bkey]

    async def _settle(self, group: Group) -> None:
        """Records, then each broadcast's figures (once per batch), then the batches (conditional on the claim)."""
        records: list[Document] = []
        counts: list[tuple[str, int, dict[str, int]]] = []
        settles: list[Conditional] = []
        for batch in group.batches:
            self._count(batch)
            done = batch.outcome in ("sent", "failed", "cancelled")
            if done:
                record, figures = self._record(batch)
                if record is not None:
                    records.append(record)
                counts.append((str(batch.doc["bkey"]), int(batch.doc["seq"]), figures))
            settles.append(Conditional(batch.id, group.lease.token, self._update(batch)))
        await self.records.write(records)
        await self.repo.count(counts, self.now)
        await self.repo.batches.write(settles)

    def _record(self, batch: Batch) -> tuple[Document | None, dict[str, int]]:
        """The batch's delivery-log document (one item per recipient) and its figures for the broadcast."""
        broadcast, plan = batch.broadcast, batch.plan
        if batch.outcome == "cancelled" or broadcast is None or plan is None:
            return None, {"cancelled": len(batch.users)}
        base = {"key": broadcast["key"], "step": None, "cycle": broadcast["broadcast_id"]}
        items: list[dict[str, Any]] = []
        if batch.outcome == "sent":
            items += [{**base, "user": u, "status": "sent", "group": "treated", "sent_at": self.now} for u in plan.to]
        else:
            reason = f"line_{batch.line_status or 'no_answer'}"
            items += [{**base, "user": u, "status": "failed", "reason": reason} for u in plan.to]
        items += [{**base, "user": u, "status": "held", "reason": "holdout", "group": "holdout"} for u in plan.held]
        items += [{**base, "user": u, "status": "skipped", "reason": reason}
                  for reason, users in sorted(plan.skipped.items()) for u in users]
        figures = {"sent" if batch.outcome == "sent" else "failed": len(plan.to), "held": len(plan.held),
                   **{f"skipped.{reason}": len(users) for reason, users in plan.skipped.items()}}
        doc = {"_id": keys.compose(batch.id, FLOW), "shop_id": batch.shop_id, "flow": FLOW, "at": self.now,
               "broadcast_id": broadcast["broadcast_id"], "seq": batch.doc["seq"], "items": items}
        return doc, figures

    def _update(self, batch: Batch) -> dict[str, Any]:
        free = {"claim": None, "prev_claim": None}
        if batch.outcome == "retry":
            attempts = int(batch.doc.get("attempts") or 0) + 1
            return {"$set": {**free, "attempts": attempts,
                             "next_due_at": self.now + self.config.retry_delay * attempts}}
        if batch.outcome == "paused" or batch.outcome is None:
            return {"$set": {**free, "next_due_at": self.now}}  # a paused shop's batches wait for the pause
        outcome = {"status": batch.outcome, "line_status": batch.line_status, "request_id": batch.request_id}
        state = "cancelled" if batch.outcome == "cancelled" else "done"
        return {"$set": {**free, "state": state, "next_due_at": NEVER, "outcome": outcome, "settled_at": self.now,
                         "sent_at": self.now if batch.outcome == "sent" else None}}

    def _count(self, batch: Batch) -> None:
        plan = batch.plan
        name = batch.outcome or "released"
        self.summary[f"batches:{name}"] += 1
        if plan is None or batch.outcome in ("cancelled", "retry", "paused", None):
            if batch.outcome == "cancelled":
                self.summary["cancelled"] += len(batch.users)
            return
        if batch.outcome == "sent":
            self.summary["sent"] += len(plan.to)
            if plan.to:
                self.summary["multicasts"] += 1
            if batch.already_accepted:
                self.summary["already_accepted"] += 1
        else:
            self.summary["failed"] += len(plan.to)
        self.summary["held:holdout"] += len(plan.held)
        for reason, users in plan.skipped.items():
            self.summary[f"skipped:{reason}"] += len(users)

