"""`POST /webhook/{shop_id}`: LINE's webhook. Verify, persist, acknowledge - then handle.

Order matters: the signature is checked on the raw body, in constant time,
before anything is parsed; every event is stored (unique by webhookEventId)
before the 200, so nothing is lost if the process dies; handling runs after
the acknowledgement (LINE gives us 2 seconds). Events whose handler died or
failed are claimed again by the recovery loop (at start-up, then periodically),
and a duplicate or redelivered event is never handled twice.
Never logs the channel secret, access token or reply tokens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.handlers import build_router
from bot.router import EventContext, Router
from bot.tasks import spawn
from bot.typedefs import CLOCK, DATABASE, LINE, SETTINGS
from core.errors import ApiError, field_path
from core.line_client import LineClients
from core.settings import Settings
from storage.database import Database, Document
from storage.shops import Shop, ShopRepository
from storage.webhook_events import HandlingResult, WebhookEventRepository

log = logging.getLogger("linecrm.webhook")

SIGNATURE_HEADER = "x-line-signature"
SHOP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RECOVERY_INTERVAL_SECONDS = 30.0
RECOVERY_BATCH = 200

ROUTER: Router = build_router()


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


async def receive(request: web.Request) -> web.Response:
    shop_id = request.match_info["shop_id"]
    if not SHOP_ID.match(shop_id):
        raise ApiError(404, "not_found", "unknown shop")
    app = request.app
    db = app[DATABASE]
    shop = await ShopRepository(db).get(shop_id)
    if shop is None:
        raise ApiError(404, "not_found", "unknown shop")
    body = await request.read()
    presented = request.headers.get(SIGNATURE_HEADER)
    if not presented:
        raise ApiError(400, "missing_signature", f"the {SIGNATURE_HEADER} header is required", SIGNATURE_HEADER)
    if not signature_matches(body, shop.line.channel_secret, presented):
        log.warning("webhook for shop %s with a bad signature", shop_id)
        raise ApiError(401, "invalid_signature", "signature does not match", SIGNATURE_HEADER)
    events = parse_events(body)
    clock = app[CLOCK]
    stored = await WebhookEventRepository(db).store(shop_id, events, clock.now())
    if stored.new:
        spawn(app, handle_events(db, app[LINE], app[SETTINGS], shop, stored.new, stored.claim, clock.now))
    if stored.duplicates:
        log.info("shop %s: %d duplicate/redelivered event(s) ignored", shop_id, stored.duplicates)
    return web.json_response({})


async def handle_events(
    db: Database,
    line: LineClients,
    settings: Settings,
    shop: Shop,
    docs: Sequence[Document],
    claim: str,
    now: Callable[[], datetime],
) -> list[HandlingResult]:
    """Dispatch stored events in LINE's timestamp order, then record every outcome in one write."""
    client = line.for_token(shop.line.channel_access_token)
    results: list[HandlingResult] = []
    shop_cache: dict[str, Any] = {}
    for doc in sorted(docs, key=lambda d: int(d["event"].get("timestamp") or 0)):
        ctx = EventContext(
            db=db, line=client, shop=shop, settings=settings, now=now(), event=doc["event"], key=doc["_id"],
            received_at=doc["received_at"], responded=doc.get("responded_at") is not None, shop_cache=shop_cache,
        )
        try:
            outcome = await ROUTER.dispatch(ctx)
        except Exception as exc:
            log.exception("event %s (%s) of shop %s failed", ctx.webhook_event_id, ctx.type, shop.shop_id)
            results.append(HandlingResult(doc["_id"], "error", f"{type(exc).__name__}: {exc}", doc.get("attempts", 1)))
        else:
            results.append(HandlingResult(doc["_id"], str(outcome)))
    await WebhookEventRepository(db).finish(results, claim, now())
    return results


async def recover_expired(db: Database, line: LineClients, settings: Settings, now: Callable[[], datetime]) -> int:
    """Handle every stored event whose lease ran out (its process died, or it failed and waited)."""
    repository = WebhookEventRepository(db)
    shops = ShopRepository(db)
    handled = 0
    while True:
        claim, docs = await repository.claim_expired(now(), limit=RECOVERY_BATCH)
        if not docs:
            return handled
        by_shop: dict[str, list[Document]] = {}
        for doc in docs:
            by_shop.setdefault(doc["shop_id"], []).append(doc)
        for shop_id, shop_docs in by_shop.items():
            shop = await shops.get(shop_id)
            if shop is None:
                await repository.finish([HandlingResult(d["_id"], "shop_gone") for d in shop_docs], claim, now())
                continue
            await handle_events(db, line, settings, shop, shop_docs, claim, now)
        handled += len(docs)
        log.info("recovered %d stored webhook event(s)", len(docs))


async def _recovery_ctx(app: web.Application) -> AsyncIterator[None]:
    """At start-up and then periodically: pick up events stored but never (successfully) handled."""

    async def loop() -> None:
        while True:
            try:
                await recover_expired(app[DATABASE], app[LINE], app[SETTINGS], app[CLOCK].now)
            except Exception:
                log.exception("webhook event recovery failed")
            await asyncio.sleep(RECOVERY_INTERVAL_SECONDS)

    task = asyncio.get_running_loop().create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup_webhook(app: web.Application) -> None:
    """Register the route and the recovery loop (after the database, LINE and background-task contexts)."""
    app.router.add_post("/webhook/{shop_id}", receive)
    app.cleanup_ctx.append(_recovery_ctx)
