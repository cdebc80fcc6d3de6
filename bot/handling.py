"""Handling stored webhook events, a batch of one shop's events at a time.

The batch costs a fixed number of database round trips whatever its size:
the customers of all its senders in one read, the shop's settings once, the
handlers' customer writes in one bulk write, the "answering" marks in one, and
the outcomes in one. Answers still go to LINE one per event (a reply token
belongs to one event) - after the writes they confirm are stored.

The batches of a process take turns at the database (`DatabaseTurn`): the
database applies writes one at a time, and every handling write queued in
front of an acknowledgement's insert delays a 200; a turn starts only once no
acknowledging write is waiting or running (or after a short patience, so
handling still progresses under sustained load), one turn at a time.

Order: each sender's events are handled one after another in LINE's
timestamp order (handlers see the writes of the sender's earlier events);
different senders run concurrently. A handler that raises fails its event
only: it is retried later (lease back-off), the others are recorded done.

Events are stored a batch of requests per document (`storage.webhook_events`),
and one stored batch may be handled in several handling batches: `Ownership`
counts what its owner still holds of each, so that the last handling batch to
finish one closes it (done, or a back-off when some event failed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from bot.batch import Batch
from bot.handlers import build_router
from bot.replies import REPLY, Sent, answer_method, send_answer
from bot.router import EventContext, Outcome, Router
from core.line_client import LineClients
from core.settings import Settings
from storage.database import Database
from storage.group_commit import DatabaseTurn
from storage.shops import Shop
from storage.signals import deliver_all
from storage.types import Document
from storage.webhook_events import AnswerPlan, Closing, HandlingResult, WebhookEventRepository, closings

log = logging.getLogger("linecrm.webhook")

ROUTER: Router = build_router()


class Ownership:
    """The stored batches an owner (a process's pipeline, or one recovery sweep) holds events of."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._incomplete: set[str] = set()

    def take(self, docs: Iterable[Document]) -> None:
        for doc in docs:
            self._held[doc["batch"]] = self._held.get(doc["batch"], 0) + 1

    def put_back(self, docs: Iterable[Document]) -> None:
        """Events left to recovery unhandled: their stored batch may not be closed by this owner."""
        for doc in docs:
            self._incomplete.add(doc["batch"])
            self._release(doc["batch"])

    def settle(self, results: Iterable[HandlingResult]) -> dict[str, bool]:
        """Count handled events; the stored batches they close -> whether every event of it succeeded."""
        touched: set[str] = set()
        for result in results:
            if result.error is not None:
                self._incomplete.add(result.batch)
            touched.add(result.batch)
            self._held[result.batch] = self._held.get(result.batch, 1) - 1
        closing: dict[str, bool] = {}
        for batch in touched:
            if self._held.get(batch, 0) <= 0:
                closing[batch] = batch not in self._incomplete
                self._release(batch, 0)
        return closing

    def _release(self, batch: str, count: int = 1) -> None:
        left = self._held.get(batch, count) - count
        if left > 0:
            self._held[batch] = left
        else:
            self._held.pop(batch, None)
            self._incomplete.discard(batch)

    def __len__(self) -> int:
        return len(self._held)


def _timestamp(doc: Document) -> int:
    return int(doc["event"].get("timestamp") or 0)


def _chains(contexts: Sequence[EventContext]) -> list[list[EventContext]]:
    """Contexts grouped by sender, each group in timestamp order; events without a sender stand alone."""
    by_sender: dict[str, list[EventContext]] = {}
    alone: list[list[EventContext]] = []
    for ctx in contexts:
        if ctx.user_id is None:
            alone.append([ctx])
        else:
            by_sender.setdefault(ctx.user_id, []).append(ctx)
    return [*by_sender.values(), *alone]


async def handle_batch(
    db: Database,
    line: LineClients,
    settings: Settings,
    shop: Shop,
    docs: Sequence[Document],
    now: Callable[[], datetime],
    router: Router = ROUTER,
    turn: DatabaseTurn | None = None,
    ownership: Ownership | None = None,
    closer: Callable[[list[Closing]], None] | None = None,
) -> list[HandlingResult]:
    """Handle stored events of one shop (each still owned by the claim it carries) and record every outcome.

    `ownership` holds these events (taken before); without one, the call owns exactly `docs`. The stored
    batches this call handles the last events of are closed at once, or handed to `closer` (`bot.closer`).
    """
    if ownership is None:
        ownership = Ownership()
        ownership.take(docs)
    turn = turn or DatabaseTurn()
    try:
        results, record = await _handle(db, line, settings, shop, docs, now, router, turn)
    except BaseException:
        ownership.put_back(docs)
        raise
    async with turn:
        closing = ownership.settle(results)  # from here on, this call no longer holds its events
        await WebhookEventRepository(db).finish(results, now(), None if closer else closing, record)
    if closer is not None:
        closer(closings(results, closing))
    return results


async def _handle(db: Database, line: LineClients, settings: Settings, shop: Shop, docs: Sequence[Document],
                  now: Callable[[], datetime], router: Router,
                  turn: DatabaseTurn) -> tuple[list[HandlingResult], str | None]:
    """Run the handlers and send the answers; the outcomes (not yet recorded) and the answers' record."""
    client = line.for_token(shop.line.channel_access_token)
    batch = Batch(db, shop, now())
    repository = WebhookEventRepository(db)
    ordered = sorted(docs, key=_timestamp)
    # Only a re-run (recovery) can find an answer an earlier attempt was about to send.
    previous = {doc["_id"]: str(doc["answering"]) for doc in ordered
                if doc.get("answering") and doc.get("responded_at") is None}
    contexts: list[EventContext] = []
    for doc in ordered:
        # A reply that may have gone out is never repeated (it has no retry key); a push may be.
        unsure = previous.get(doc["_id"]) == REPLY
        if unsure:
            log.warning("event %s of shop %s: an earlier reply may have gone out; not answering again",
                        doc["webhook_event_id"], shop.shop_id)
        contexts.append(EventContext(
            db=db, line=client, shop=shop, settings=settings, now=batch.now, event=doc["event"], key=doc["_id"],
            received_at=doc["received_at"], batch=batch, responded=doc.get("responded_at") is not None or unsure,
        ))
    async with turn:
        await batch.load_customers({ctx.user_id for ctx in contexts if ctx.user_id})
        await batch.messaging()

    outcomes: dict[str, Outcome | Exception] = {}

    async def dispatch(chain: list[EventContext]) -> None:
        for ctx in chain:
            try:
                outcomes[ctx.key] = await router.dispatch(ctx)
            except Exception as exc:  # this event fails alone; recovery retries it after a back-off
                log.exception("event %s (%s) of shop %s failed", ctx.webhook_event_id, ctx.type, shop.shop_id)
                outcomes[ctx.key] = exc

    chains = _chains(contexts)
    await asyncio.gather(*(dispatch(chain) for chain in chains))

    stored = {doc["_id"]: doc for doc in ordered}
    planned: dict[str, str] = {}
    at = now()
    for ctx in contexts:
        if ctx.answer and not isinstance(outcomes.get(ctx.key), Exception):
            method = answer_method(ctx, at, previous.get(ctx.key))
            if method is not None:
                planned[ctx.key] = method
    # Everything the answers confirm is stored before the first answer goes out.
    async with turn:
        followed = await batch.flush()
        record = await repository.mark_answering([AnswerPlan.of(stored[key], method)
                                                  for key, method in planned.items()], at)

    await deliver_all(followed)  # the flows hear the follows (an undelivered intent stays for the drain)
    sent: dict[str, Sent] = {}

    async def answer(chain: list[EventContext]) -> None:
        for ctx in chain:
            if ctx.key in planned:
                sent[ctx.key] = await send_answer(ctx, planned[ctx.key])

    await asyncio.gather(*(answer(chain) for chain in chains))

    return [_result(ctx, doc, outcomes.get(ctx.key), sent.get(ctx.key))
            for ctx, doc in zip(contexts, ordered, strict=True)], record


def _result(ctx: EventContext, doc: Document, outcome: Outcome | Exception | None,
            sent: Sent | None) -> HandlingResult:
    stored = {"attempts": int(doc.get("attempts", 1)), "batch": doc["batch"]}
    if isinstance(outcome, Exception):
        return HandlingResult(ctx.key, doc["claim"], "error", f"{type(outcome).__name__}: {outcome}", **stored)
    name = str(outcome) if outcome is not None else "unhandled"
    if sent is not None and sent.error is not None:
        log.warning("answer to event %s of shop %s failed: %s", ctx.webhook_event_id, ctx.shop.shop_id, sent.error)
        return HandlingResult(ctx.key, doc["claim"], "error", sent.error, answer_unsent=sent.unsent, **stored)
    return HandlingResult(ctx.key, doc["claim"], name, responded=sent is not None and sent.responded, **stored)

