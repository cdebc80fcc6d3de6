"""The delivery engine: one run over every due contact, for every per-customer flow, exactly once.

A run streams the due contacts through the `contacts` due index and, batch by batch:
claims a slice of the due order (three indexed `update_many`s at most: the slice's `next_due_at` becomes
a lease moment unique to the batch) → reads the slice back with each contact's customer and the flows'
lookups (one aggregate) → asks each flow for an `Intent` per due sub-state (pure) → applies the policy
(pure: reachable, window, frequency cap, holdout) → pushes with each step's deterministic retry key →
writes the batch's records (one insert per shop and flow) → settles every contact with one conditional
update (sub-states advanced, sends and records appended, claim released, `next_due_at` recomputed).

Exactly once: a worker killed anywhere leaves its contacts leased; when the lease runs out they are due
again and the next run takes them with `prev_claim` naming the dead batch. Its records are looked up
(`DeliveryLog.for_tokens`): a step recorded there is settled without a push or a second record; a step
pushed but not recorded is pushed again with the same retry key, which LINE answers 409 (already
accepted) — counted as sent once. A settle that finds the contact changed by an ingest write (its `v`)
re-reads it and settles against the fresh state. Planning of batch N+1 overlaps the sends of batch N.

Cost per message on the embedded database: its share of the claim and the read, and its contact's
settle update; the records, claims and reads are per batch (a handful of round trips per 1,000).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from core.clock import as_utc
from core.flex import compact_json
from core.line_client import LineApiError, QuotaExhausted
from delivery import policy
from delivery.context import JobContext, JobSummary
from delivery.flow import Flow, Intent, Record, RecordStatus
from delivery.pacing import RateLimiter
from delivery.policy import DeliveryPolicy, Verdict
from storage.broadcasts import BroadcastRepository, Exposures
from storage.contacts import LOG_KEEP, SENT_KEEP, ContactRepository, Lookup, Settle
from storage.database import Database, Document
from storage.delivery_log import DeliveryLog
from storage.leases import NEVER, DueRef, new_lease
from storage.pauses import ShopPauses
from storage.shop_settings import DeliverySettings, ShopSettingsRepository
from storage.shops import Shop

log = logging.getLogger("linecrm.delivery")

MAX_SETTLE_ROUNDS = 5


@dataclass(frozen=True)
class EngineConfig:
    batch_size: int = 1000
    lease: timedelta = timedelta(minutes=5)  # a batch not settled by then is taken over by another run
    send_rate: float = 1_000.0  # pushes per second per shop (LINE allows 2,000/s per channel)
    concurrency: int = 64  # pushes in flight per worker
    retry_delay: timedelta = timedelta(minutes=5)  # after a push that got no answer (× attempts)
    max_attempts: int = 5


DEFAULT_CONFIG = EngineConfig()


@dataclass(frozen=True)
class ShopInfo:
    shop: Shop
    policy: DeliveryPolicy
    # Sends recorded outside contacts (broadcast batches): they count toward the frequency cap too.
    exposures: Exposures = field(default_factory=Exposures)


Outcome = Literal["sent", "failed", "retry", "paused", "recorded", "none"]


@dataclass
class Work:
    """One intent of one contact through the policy and the send."""

    intent: Intent
    verdict: Verdict
    outcome: Outcome = "none"
    status: int | None = None  # LINE's answer for a failure
    already_accepted: bool = False
    request_id: str | None = None
    recorded: Document | None = None  # what a lapsed claim recorded for this step
    record: Record | None = None  # what this run records for it (set when the batch settles)


@dataclass
class ContactWork:
    contact: Document
    shop_id: str
    items: list[Work] = field(default_factory=list)

    @property
    def line_user_id(self) -> str:
        return str(self.contact.get("line_user_id") or "")


class Engine:
    """The engine for a list of flows (the worker composes it in `scheduler.jobs`): one per run, because
    the flow objects cache the run's reads (settings, catalogues)."""

    def __init__(self, flows: Sequence[Flow]) -> None:
        self.flows = list(flows)
        self.lookups: list[Lookup] = list({lookup.as_field: lookup for flow in self.flows
                                           for lookup in flow.lookups}.values())

    def flow_for(self, state_key: str) -> Flow | None:
        return next((flow for flow in self.flows if flow.owns(state_key)), None)

    async def run(self, ctx: JobContext, now: datetime, shop_id: str | None = None,
                  config: EngineConfig = DEFAULT_CONFIG) -> JobSummary:
        return await Run(self, ctx, as_utc(now), shop_id, config).execute()

    def plan_contact(self, contact: Document, now: datetime, info: ShopInfo | None, *,
                     not_due: bool = False) -> ContactWork:
        """The intents and verdicts for one contact (the run and the dry run share it).

        `not_due`: also ask about sub-states that are not due yet (the dry run's "when will it go out").
        """
        work = ContactWork(contact, str(contact.get("shop_id") or ""))
        intents: list[Intent] = []
        for key, state in sorted((contact.get("flows") or {}).items()):
            due = state.get("due_at") if isinstance(state, dict) else None
            if not not_due and (due is None or as_utc(due) > now):
                continue
            flow = self.flow_for(key)
            if flow is None:  # a flow no longer composed: nothing will ever handle it
                intents.append(Intent(flow="unknown", state_key=key, kind="end", state={"due_at": None}))
                continue
            if info is None:  # the shop is gone
                intents.append(Intent(flow=flow.name, state_key=key, kind="end", state={"due_at": None},
                                      reason="unknown_shop"))
                continue
            intents.append(flow.plan(contact, key, state, now))
        if not intents:
            return work
        sent = [as_utc(entry["at"]) for entry in contact.get("sent") or [] if entry.get("at")]
        if info is not None:
            sent += info.exposures.of(work.line_user_id)
        timezone = info.shop.timezone if info else "Asia/Tokyo"
        rules = info.policy if info else DeliveryPolicy()
        verdicts = policy.decide(work.shop_id, work.line_user_id, contact.get("customer"), sent, intents, rules,
                                 timezone, now)
        work.items = [Work(intent, verdict) for intent, verdict in zip(intents, verdicts, strict=True)]
        return work


class Run:
    """One run of the engine at one moment."""

    def __init__(self, engine: Engine, ctx: JobContext, now: datetime, shop_id: str | None,
                 config: EngineConfig) -> None:
        self.engine, self.ctx, self.now, self.shop_id, self.config = engine, ctx, now, shop_id, config
        self.db = ctx.database
        self.contacts = ContactRepository(self.db)
        self.records = DeliveryLog(self.db)
        self.pauses = ShopPauses(self.db)
        self.summary: Counter[str] = Counter()
        self.paused: set[str] = set()
        self.shops: dict[str, ShopInfo | None] = {}
        self.limiters: dict[str, RateLimiter] = {}
        self.semaphore = asyncio.Semaphore(config.concurrency)

    async def execute(self) -> JobSummary:
        self.paused.update(await self.pauses.paused_shops(self.now))
        sending: tuple[str, list[ContactWork], asyncio.Task[None]] | None = None
        settling: list[asyncio.Task[None]] = []
        try:
            async for refs in self.contacts.due_stream(self.now, self.shop_id, self.config.batch_size):
                if self.shop_id is not None and self.shop_id in self.paused:
                    break
                batch = await self._claim([r for r in refs if r.shop_id not in self.paused])
                if batch is None:
                    continue
                token, works = batch
                # Pipeline: plan batch N+1 while N is sent and N-1 settled; at most two batches wait.
                if sending is not None:
                    await sending[2]
                    settling.append(asyncio.create_task(self._settle(sending[0], sending[1])))
                sending = (token, works, asyncio.create_task(self._send_all(works)))
                while len(settling) > 1:
                    await settling.pop(0)
        finally:
            if sending is not None:
                await sending[2]
                settling.append(asyncio.create_task(self._settle(sending[0], sending[1])))
            for task in settling:
                await task
        if self.paused:
            self.summary["shops_paused"] = len(self.paused)
        return dict(self.summary)

    async def _claim(self, refs: list[DueRef]) -> tuple[str, list[ContactWork]] | None:
        if not refs:
            return None
        lease = new_lease(self.now, self.config.lease)
        token, lease_at = lease.token, lease.at
        await self.contacts.claim(refs, token, lease_at, self.shop_id)
        claimed = await self.contacts.claimed(lease_at, token, self.engine.lookups)
        if not claimed:
            return None
        self.summary["contacts"] += len(claimed)
        shop_ids = {str(c.get("shop_id") or "") for c in claimed}
        await self._ensure_shops(shop_ids)
        live = {s for s in shop_ids if self.shops.get(s) is not None}
        for flow in self.engine.flows:
            await flow.prepare(self.db, live)
        recorded = await self.records.for_tokens(c["prev_claim"] for c in claimed if c.get("prev_claim"))
        works = []
        for contact in claimed:
            work = self.engine.plan_contact(contact, self.now, self.shops.get(work_shop(contact)))
            for item in work.items:
                previous = recorded.get(item.intent.key or "") if contact.get("prev_claim") else None
                if previous is not None and previous.get("status") != "deferred":
                    item.recorded, item.outcome = previous, "recorded"
            works.append(work)
        return token, works

    async def _ensure_shops(self, shop_ids: set[str]) -> None:
        missing = sorted(s for s in shop_ids if s not in self.shops)
        if missing:
            self.shops.update(await shop_infos(self.db, missing, self.now))

    # --- sending ---

    async def _send_all(self, works: list[ContactWork]) -> None:
        sends = [(work, item) for work in works for item in work.items
                 if item.verdict.action == "send" and item.outcome == "none"]
        await asyncio.gather(*(self._push(work, item) for work, item in sends))

    async def _push(self, work: ContactWork, item: Work) -> None:
        info = self.shops.get(work.shop_id)
        intent = item.intent
        if info is None or work.shop_id in self.paused or not (intent.messages or intent.encoded) \
                or intent.key is None:
            item.outcome = "paused" if work.shop_id in self.paused else "failed"
            return
        limiter = self.limiters.setdefault(work.shop_id, RateLimiter(self.config.send_rate))
        client = self.ctx.line.for_token(info.shop.line.channel_access_token)
        async with self.semaphore:
            await limiter.acquire()
            if work.shop_id in self.paused:
                item.outcome = "paused"
                return
            try:
                encoded = intent.encoded or compact_json(intent.messages)
                result = await client.push_encoded(work.line_user_id, encoded, retry_key=intent.key)
            except QuotaExhausted:
                item.outcome = "paused"
                if work.shop_id not in self.paused:
                    self.paused.add(work.shop_id)
                    await self.pauses.pause(work.shop_id, self.now, "monthly_quota")
                    self.summary["quota_exhausted"] += 1
                    log.error("shop %s: LINE monthly quota exhausted; deliveries paused", work.shop_id)
                return
            except LineApiError as exc:
                attempts = int((work.contact.get("flows") or {}).get(intent.state_key, {}).get("attempts") or 0) + 1
                if exc.status is not None and 400 <= exc.status < 500 or attempts >= self.config.max_attempts:
                    item.outcome, item.status = "failed", exc.status
                    log.warning("shop %s: %s push failed for good (status %s)", work.shop_id, intent.flow, exc.status)
                else:
                    item.outcome = "retry"
                return
        item.outcome, item.request_id, item.already_accepted = "sent", result.request_id, result.already_accepted

    # --- recording and settling ---

    def _record(self, work: ContactWork, item: Work) -> Record | None:
        intent, verdict = item.intent, item.verdict
        if item.outcome == "recorded" or intent.key is None:
            return None

        def record(status: RecordStatus, reason: str | None = None, **extra: Any) -> Record:
            return Record(key=str(intent.key), user=work.line_user_id, step=intent.step, status=status,
                          reason=reason, cycle=intent.cycle, detail=intent.detail, **extra)

        if verdict.action == "send" and item.outcome == "sent":
            return record("sent", group="treated", sent_at=self.now)
        if verdict.action == "send" and item.outcome == "failed":
            return record("failed", f"line_{item.status or 'no_answer'}")
        if verdict.action == "hold":
            return record("held", "holdout", group="holdout")
        if verdict.action in ("drop", "skip"):
            return record("skipped", verdict.reason or "unknown")
        if verdict.action == "defer":
            return record("deferred", verdict.reason, until=verdict.until)
        return None

    def _changes(self, work: ContactWork, item: Work) -> dict[str, Any] | None:
        """The fields merged into the intent's sub-state (None: leave it as it is)."""
        intent, verdict, outcome = item.intent, item.verdict, item.outcome
        if outcome == "recorded":
            return {**intent.state, "attempts": 0}
        if verdict.action == "defer":
            return {"due_at": verdict.until}
        if verdict.action == "send":
            if outcome == "paused":
                return None
            if outcome == "retry":
                attempts = int((work.contact.get("flows") or {}).get(intent.state_key, {}).get("attempts") or 0) + 1
                return {"attempts": attempts, "due_at": self.now + self.config.retry_delay * attempts}
        return {**intent.state, "attempts": 0}

    def _count(self, item: Work) -> None:
        intent, verdict, outcome = item.intent, item.verdict, item.outcome
        flow = intent.flow
        if outcome == "recorded":
            name = "recovered"
        elif verdict.action == "send":
            name = {"sent": "sent", "failed": "failed", "retry": "retry_later", "paused": "held:quota"}.get(
                outcome, "failed")
            if outcome == "sent" and item.already_accepted:
                self.summary["already_accepted"] += 1
        elif verdict.action == "hold":
            name = "held:holdout"
        elif verdict.action in ("drop", "skip"):
            name = f"skipped:{verdict.reason}"
        elif verdict.action == "defer":
            name = f"deferred:{verdict.reason}"
        else:
            name = intent.kind if intent.kind != "end" else f"ended:{intent.reason or 'done'}"
        self.summary[name] += 1
        self.summary[f"{flow}:{name}"] += 1

    async def _settle(self, token: str, works: list[ContactWork]) -> None:
        """Records first (one insert per shop and flow), then one conditional update per contact."""
        batches: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for work in works:
            for item in work.items:
                self._count(item)
                item.record = self._record(work, item)
                if item.record is not None:
                    batches[(work.shop_id, item.intent.flow)].append(item.record.as_item())
        await self.records.write({"_id": f"{token}:{shop}:{flow}", "shop_id": shop, "flow": flow, "at": self.now,
                                  "items": items} for (shop, flow), items in batches.items())
        pending = {work.contact["_id"]: work for work in works}
        fresh: dict[str, Document] = {}
        for _ in range(MAX_SETTLE_ROUNDS):
            settles = [Settle(cid, token, int((fresh.get(cid) or work.contact).get("v") or 0),
                              self._update(work, fresh.get(cid)))
                       for cid, work in pending.items()]
            conflicts = await self.contacts.settle(settles)
            if not conflicts:
                return
            self.summary["settle_conflicts"] += len(conflicts)
            fresh = await self.contacts.get_many(conflicts)
            pending = {cid: pending[cid] for cid in conflicts if cid in fresh}
        log.error("%d contacts kept changing under their claim; their lease will hand them to a later run",
                  len(pending))

    def _update(self, work: ContactWork, fresh: Document | None) -> dict[str, Any]:
        """The settle of one contact: against what the worker read, or against a fresher copy after a conflict."""
        base = fresh if fresh is not None else work.contact
        flows: dict[str, Any] = {k: dict(v) for k, v in (base.get("flows") or {}).items() if isinstance(v, dict)}
        touched: set[str] = set()
        sent_entries: list[dict[str, Any]] = []
        log_entries: list[dict[str, Any]] = []
        for item in work.items:
            intent = item.intent
            changes = self._changes(work, item)
            current = flows.get(intent.state_key)
            if changes is not None and (fresh is None or _still(current, intent.expects)):
                flows[intent.state_key] = {**(current or {}), **changes}
                touched.add(intent.state_key)
            entry = _log_entry(intent, item.record, item.recorded, self.now)
            if entry is not None:
                log_entries.append(entry)
                if entry["status"] == "sent":
                    sent_entries.append({"at": entry["sent_at"] or self.now, "flow": intent.flow})
        dues = [as_utc(s["due_at"]) for s in flows.values() if s.get("due_at") is not None]
        update: dict[str, Any] = {"$set": {**{f"flows.{key}": flows[key] for key in sorted(touched)},
                                           "next_due_at": min(dues) if dues else NEVER,
                                           "claim": None, "prev_claim": None}}
        push: dict[str, Any] = {}
        if sent_entries:
            push["sent"] = {"$each": sent_entries, "$slice": -SENT_KEEP}
        if log_entries:
            push["log"] = {"$each": log_entries, "$slice": -LOG_KEEP}
        if push:
            update["$push"] = push
        return update


async def shop_infos(database: Database, shop_ids: Sequence[str],
                     now: datetime | None = None) -> dict[str, ShopInfo | None]:
    """Each shop with its delivery policy (None for a shop that no longer exists): two reads for all.

    With `now`, a shop that caps sends also gets its customers' broadcast sends of the last week (the cap
    spans every flow, and broadcasts record their recipients per batch, not per contact).
    """
    docs = {doc["_id"]: doc async for doc in database.shops.find({"_id": {"$in": list(shop_ids)}})}
    settings = await ShopSettingsRepository(database).get_many(list(shop_ids), DeliverySettings)
    infos: dict[str, ShopInfo | None] = {}
    for shop_id in shop_ids:
        doc = docs.get(shop_id)
        cap = settings[shop_id].frequency_cap
        if doc is None:
            infos[shop_id] = None
            continue
        rules = DeliveryPolicy(cap.per_day, cap.per_week, settings[shop_id].holdout_percent)
        capped = now is not None and (rules.per_day is not None or rules.per_week is not None)
        exposures = await BroadcastRepository(database).exposures(shop_id, now - policy.WEEK, now) \
            if capped and now is not None else Exposures()
        infos[shop_id] = ShopInfo(Shop.from_doc(doc), rules, exposures)
    return infos


def _log_entry(intent: Intent, record: Record | None, recorded: Document | None,
               now: datetime) -> dict[str, Any] | None:
    """The contact's copy of a record (attribution, caps): this run's, or the one a lapsed claim wrote."""
    if record is not None:
        if record.status == "deferred":
            return None
        return {"flow": intent.flow, "key": record.key, "step": record.step, "status": record.status,
                "reason": record.reason, "group": record.group, "at": now, "sent_at": record.sent_at,
                "cycle": record.cycle}
    if recorded is not None:
        return {"flow": intent.flow, "key": recorded.get("key"), "step": recorded.get("step"),
                "status": recorded.get("status"), "reason": recorded.get("reason"), "group": recorded.get("group"),
                "at": recorded.get("sent_at") or now, "sent_at": recorded.get("sent_at"),
                "cycle": recorded.get("cycle", "")}
    return None


def work_shop(contact: Document) -> str:
    return str(contact.get("shop_id") or "")


def _still(state: dict[str, Any] | None, expects: dict[str, Any]) -> bool:
    """Whether a fresh sub-state is still the one the intent was planned on."""
    if state is None:
        return not expects
    return all(state.get(name) == value for name, value in expects.items())
