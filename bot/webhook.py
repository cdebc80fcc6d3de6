"""`POST /webhook/{shop_id}`: LINE's webhook. Verify, persist, acknowledge - then handle.

Order matters: the signature is checked on the raw body, in constant time,
before anything is parsed (the shop and its secret come from a short-lived
per-process cache); every event is stored durably (unique by webhookEventId,
`ACKNOWLEDGED` write concern, in one document with the events of concurrent
requests: `storage.webhook_events`) before the 200, so nothing is lost if the
process or the database dies. Handling runs after the acknowledgement, in the bounded pipeline
(`bot.pipeline`): when it is full, or the database is down, the answer is a
quick 503 and LINE redelivers. Events whose handler died or failed are
claimed again by the recovery loop (at start-up, then periodically), and a
duplicate or redelivered event is never handled twice.
Never logs the channel secret, access token or reply tokens.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pymongo
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import PyMongoError

from bot.closer import BatchCloser
from bot.handling import Ownership, handle_batch
from bot.pipeline import HandlingPipeline
from bot.typedefs import (
    CLOCK,
    DATABASE,
    LINE,
    SETTINGS,
    SHOPS,
    WEBHOOK_CLOSER,
    WEBHOOK_OWNERSHIP,
    WEBHOOK_PIPELINE,
    WEBHOOK_WRITES,
)
from core.errors import ApiError, field_path
from core.line_client import LineClients
from core.periodic import Periodic
from core.settings import Settings
from storage.database import Database
from storage.durability import ACK_TIMEOUT_SECONDS, writable
from storage.group_commit import DatabaseTurn, GroupCommit
from storage.shops import Shop, ShopRepository
from storage.types import Document
from storage.webhook_events import LEASE, HandlingResult, WebhookEventRepository, event_documents

log = logging.getLogger("linecrm.webhook")

SIGNATURE_HEADER = "x-line-signature"
SHOP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RECOVERY_INTERVAL_SECONDS = 30.0
RECOVERY_BATCH = 20  # stored batches per recovery claim (each holds the events of a few requests)
HANDLING_BATCH = 50  # events per handling batch (a batch's reads and writes grow with it)
SHUTDOWN_GRACE_SECONDS = 5.0
GROUP_WRITE_MAX = 500  # events per stored batch (one document: well under its 16 MB)
# One group insert at a time: what arrives meanwhile goes into the next one (fewer, larger writes queue less in
# the embedded database, whose writes cost ~3 ms each plus ~0.15 ms per event; bench_webhook: p99 at 300/s x1
# 157 ms with one in flight vs 187-264 ms with two).
GROUP_WRITES_IN_FLIGHT = 1


class _Event(BaseModel):
    """The fields we rely on; the rest of the event is kept as LINE sent it."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1, max_length=64)
    webhookEventId: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    timestamp: int


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")
    destination: str | None = None
    events: list[_Event] = Field(max_length=1000)


def signature_for(body: bytes, channel_secret: str) -> str:
    return base64.b64encode(hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def signature_matches(body: bytes, channel_secret: str, presented: str) -> bool:
    """Constant-time comparison of LINE's signature with ours."""
    return hmac.compare_digest(signature_for(body, channel_secret).encode("ascii"), presented.encode("utf-8"))


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """The events of a verified body, raw; ApiError(400) naming the field when malformed."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None
    try:
        _Body.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = field_path(tuple(first["loc"])) or "body"
        raise ApiError(400, "invalid_webhook", f"{path}: {first['msg']}", path) from None
    events: list[dict[str, Any]] = payload["events"]
    return events


class Unavailable(ApiError):
    """We cannot take the events now (handling is full, or the database is down): LINE redelivers later."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "unavailable", message)


async def _verified_shop(request: web.Request, body: bytes) -> Shop:
    """The shop whose channel secret signed `body`; a cached secret that does not match is read again once."""
    shop_id = request.match_info["shop_id"]
    if not SHOP_ID.match(shop_id):
        raise ApiError(404, "not_found", "unknown shop")
    shops = request.app[SHOPS]
    shop = await shops.get(shop_id)
    if shop is None:
        raise ApiError(404, "not_found", "unknown shop")
    presented = request.headers.get(SIGNATURE_HEADER)
    if not presented:
        raise ApiError(400, "missing_signature", f"the {SIGNATURE_HEADER} header is required", SIGNATURE_HEADER)
    if not signature_matches(body, shop.line.channel_secret, presented):
        fresh = await shops.get(shop_id, fresh=True)  # the secret may have been changed since we cached it
        if fresh is None or not signature_matches(body, fresh.line.channel_secret, presented):
            log.warning("webhook for shop %s with a bad signature", shop_id)
            raise ApiError(401, "invalid_signature", "signature does not match", SIGNATURE_HEADER)
        shop = fresh
    return shop


async def receive(request: web.Request) -> web.Response:
    app = request.app
    db = app[DATABASE]
    if not writable(db):  # known to be down: say so at once rather than wait for it
        raise Unavailable("the database is unavailable; try again later")
    body = await request.read()
    with pymongo.timeout(ACK_TIMEOUT_SECONDS):
        shop = await _verified_shop(request, body)
    events = parse_events(body)
    if not events:
        return web.json_response({})
    pipeline = app[WEBHOOK_PIPELINE]
    if not pipeline.reserve(len(events)):
        raise Unavailable("too many events waiting to be handled; try again later")
    stored = False
    try:
        docs = event_documents(shop.shop_id, events, app[CLOCK].now())
        try:
            fresh = await app[WEBHOOK_WRITES].submit(docs)
        except (PyMongoError, TimeoutError) as exc:
            log.warning("storing webhook events of shop %s failed: %r", shop.shop_id, exc)
            raise Unavailable("the events could not be stored; try again later") from None
        new = [doc for doc, is_new in zip(docs, fresh, strict=True) if is_new]
        if len(new) < len(docs):
            log.info("shop %s: %d duplicate/redelivered event(s) ignored", shop.shop_id, len(docs) - len(new))
        pipeline.unreserve(len(docs) - len(new))
        app[WEBHOOK_OWNERSHIP].take(new)
        pipeline.submit(shop, new)
        stored = True
    finally:
        if not stored:
            pipeline.unreserve(len(events))
    return web.json_response({})


async def recover_expired(db: Database, line: LineClients, settings: Settings, now: Callable[[], datetime]) -> int:
    """Handle every stored event whose lease ran out (its process died, or it failed and waited)."""
    repository = WebhookEventRepository(db)
    shops = ShopRepository(db)
    handled = 0
    await repository.adopt_legacy(now())
    while True:
        _, docs = await repository.claim_expired(now(), limit=RECOVERY_BATCH)
        if not docs:
            return handled
        ownership = Ownership()  # this sweep owns the stored batches it claimed: it closes them
        ownership.take(docs)
        by_shop: dict[str, list[Document]] = {}
        for doc in docs:
            by_shop.setdefault(doc["shop_id"], []).append(doc)
        for shop_id, shop_docs in by_shop.items():
            shop = await shops.get(shop_id)
            if shop is None:
                results = [HandlingResult(d["_id"], d["claim"], "shop_gone", batch=d["batch"])
                           for d in shop_docs]
                await repository.finish(results, now(), ownership.settle(results))
                continue
            for start in range(0, len(shop_docs), HANDLING_BATCH):
                await handle_batch(db, line, settings, shop, shop_docs[start:start + HANDLING_BATCH], now,
                                   ownership=ownership)
        handled += len(docs)
        log.info("recovered %d stored webhook event(s)", len(docs))


def _handler(app: web.Application, ownership: Ownership, turn: DatabaseTurn,
             closer: BatchCloser) -> Callable[[Shop, list[Document]], Any]:
    async def handle(shop: Shop, docs: list[Document]) -> None:
        now = app[CLOCK].now
        # Held so long that recovery may take it over: leave it to recovery rather than race it.
        late = [doc for doc in docs if now() - doc["received_at"] > LEASE / 2]
        if late:
            log.warning("%d webhook event(s) of shop %s waited too long; left to recovery", len(late), shop.shop_id)
            ownership.put_back(late)
            docs = [doc for doc in docs if now() - doc["received_at"] <= LEASE / 2]
        if docs:
            await handle_batch(app[DATABASE], app[LINE], app[SETTINGS], shop, docs, now, turn=turn,
                               ownership=ownership, closer=closer.close)

    return handle


async def _pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
    """The group writer of acknowledgements and the handling pipeline; on shutdown, drain then hand back."""
    settings = app[SETTINGS]
    repository = WebhookEventRepository(app[DATABASE])

    async def write(docs: list[Document]) -> list[bool]:
        with pymongo.timeout(ACK_TIMEOUT_SECONDS):
            return await repository.insert_new(docs)

    writes: GroupCommit[Document, bool] = GroupCommit(write, max_items=GROUP_WRITE_MAX,
                                                      max_in_flight=GROUP_WRITES_IN_FLIGHT)
    ownership = Ownership()  # the stored batches whose events this process holds
    turn = DatabaseTurn(writes.idle)  # handling and closing take turns at the database, behind acknowledgements

    async def quiet() -> None:  # nothing waits for the closer: it goes after acknowledgements and handling
        await writes.idle()
        await pipeline.idle()

    closer = BatchCloser(repository, turn, quiet, app[CLOCK].now)
    pipeline = HandlingPipeline(_handler(app, ownership, turn, closer), workers=settings.webhook_workers,
                                capacity=settings.webhook_queue_max, batch_max=HANDLING_BATCH)
    app[WEBHOOK_WRITES] = writes
    app[WEBHOOK_PIPELINE] = pipeline
    app[WEBHOOK_OWNERSHIP] = ownership
    app[WEBHOOK_CLOSER] = closer
    closer.start()
    pipeline.start()
    yield
    await writes.close()
    left = await pipeline.stop(SHUTDOWN_GRACE_SECONDS)
    if left:
        with contextlib.suppress(PyMongoError):
            await repository.release([doc for _, doc in left], app[CLOCK].now())
        log.info("handed %d unhandled webhook event(s) back to recovery", len(left))
    await closer.stop(SHUTDOWN_GRACE_SECONDS)


async def _recovery_ctx(app: web.Application) -> AsyncIterator[None]:
    """At start-up and then periodically: pick up events stored but never (successfully) handled."""

    async def sweep() -> None:
        await recover_expired(app[DATABASE], app[LINE], app[SETTINGS], app[CLOCK].now)

    recovery = Periodic(sweep, RECOVERY_INTERVAL_SECONDS, "webhook event recovery")
    recovery.start()
    yield
    await recovery.stop()


def setup_webhook(app: web.Application) -> None:
    """Register the route, the pipeline and the recovery loop (after the database and LINE contexts)."""
    app.router.add_post("/webhook/{shop_id}", receive)
    app.cleanup_ctx.append(_pipeline_ctx)
    app.cleanup_ctx.append(_recovery_ctx)
