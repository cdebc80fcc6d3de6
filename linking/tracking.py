"""`POST /t/{shop_id}/events`: browser events from the shop's pages (the tracking script).

Order of work, so junk and floods change nothing: shop (cached) → sender: an
allowed `Origin`, or - when the shop opted in to server-side events - its API
key → body size and JSON → pydantic validation of every event → a group write
with the events of concurrent requests (`linking.ingest.acknowledge`: the
browsers' per-minute budgets, the shop's shared by every web process, then one
durable insert of the new events, unique by the client's event ID) → 204. The
view counters and the flows' signals follow behind the answer
(`linking.event_processing`). A request without an allowed Origin and without the
key is refused: anything else could post events in a shop's name.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pymongo
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import PyMongoError

from admin_api.models import Identifier
from bot.typedefs import CLOCK, DATABASE, SHOPS
from core.errors import ApiError, from_validation_error
from core.periodic import Periodic
from linking.budgets import BrowserBudgets
from linking.event_processing import EventProcessor
from linking.ingest import EVENTS_PER_BROWSER_PER_MINUTE, Budgets, Submission, Verdict, acknowledge
from linking.models import BrowserId, EventId, PageUrl, ShortValue
from storage.durability import ACK_TIMEOUT_SECONDS, writable
from storage.group_commit import DatabaseTurn, GroupCommit
from storage.shop_settings import ShopSettingsRepository, TrackingSettings
from storage.shops import ShopRepository, hash_api_key
from storage.tracking_batches import TrackingBatchRepository

log = logging.getLogger("linecrm.linking")

MAX_BODY_BYTES = 32 * 1024
MAX_BATCH = 20
PREFLIGHT_MAX_AGE = "600"
GROUP_WINDOW_SECONDS = 0.002  # how long a group waits for more requests: a few ms
GROUP_MAX_REQUESTS = 100
GROUP_WRITES_IN_FLIGHT = 2
GROUP_TIMEOUT_SECONDS = 2.0  # a group write (several round trips) gives up after this long: 503
RECOVERY_INTERVAL_SECONDS = 15.0
STOP_GRACE_SECONDS = 5.0


class Utm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: ShortValue | None = None
    medium: ShortValue | None = None
    campaign: ShortValue | None = None
    term: ShortValue | None = None
    content: ShortValue | None = None


class BrowserEvent(BaseModel):
    """One event as the script sends it (INTERFACES.md); the server stamps the time."""

    model_config = ConfigDict(extra="forbid")
    event_id: EventId
    browser_id: BrowserId
    type: Literal["page_view", "add_to_cart", "checkout_started", "purchase"]
    url: PageUrl
    product_id: Identifier | None = None
    variant_id: Identifier | None = None
    referrer: PageUrl | None = None
    utm: Utm | None = None
    cart_token: ShortValue | None = None
    order_id: Identifier | None = None
    quantity: int | None = Field(default=None, ge=1, le=10_000)
    value: int | None = Field(default=None, ge=0, le=1_000_000_000, description="yen")


def parse_events(raw: bytes) -> list[BrowserEvent]:
    """Validate a body (one event or a batch) and drop repeats of an event ID within it."""
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None
    if isinstance(payload, dict):
        items, prefixes = [payload], [""]
    elif isinstance(payload, list):
        if not 1 <= len(payload) <= MAX_BATCH:
            raise ApiError(422, "validation_error", f"body: a batch holds 1 to {MAX_BATCH} events")
        items, prefixes = payload, [f"[{index}]" for index in range(len(payload))]
    else:
        raise ApiError(422, "validation_error", "body: must be an event object or an array of events")
    unique: dict[str, BrowserEvent] = {}
    for item, prefix in zip(items, prefixes, strict=True):
        try:
            event = BrowserEvent.model_validate(item)
        except ValidationError as exc:
            raise from_validation_error(exc, prefix=prefix) from None
        unique.setdefault(event.event_id, event)
    return list(unique.values())


def cors_headers(origin: str | None, allowed: list[str]) -> dict[str, str]:
    """CORS answers only for the shop's configured origins; `Vary` keeps caches honest."""
    if origin is None or origin not in allowed:
        return {"Vary": "Origin"}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@dataclass(frozen=True)
class _Config:
    settings: TrackingSettings
    expires: float


# A per-process copy of each known shop's tracking settings, kept a few seconds: it saves a round trip
# per event request, and a changed setting reaches every process within the TTL.
CONFIGS: web.AppKey[dict[str, _Config]] = web.AppKey("tracking_configs", dict)
TRACKING_WRITES: web.AppKey[GroupCommit[Submission, Verdict]] = web.AppKey("tracking_writes")
EVENT_PROCESSOR: web.AppKey[EventProcessor] = web.AppKey("event_processor", EventProcessor)
BROWSER_BUDGETS: web.AppKey[BrowserBudgets] = web.AppKey("browser_budgets", BrowserBudgets)
CONFIG_TTL_SECONDS = 10.0
CONFIG_CACHE_MAX = 10_000


async def _shop_tracking(request: web.Request) -> tuple[str, TrackingSettings]:
    shop_id = request.match_info["shop_id"]
    cache = request.app[CONFIGS]
    cached = cache.get(shop_id)
    if cached is not None and cached.expires > time.monotonic():
        return shop_id, cached.settings
    if await request.app[SHOPS].get(shop_id) is None:
        raise ApiError(404, "not_found", "unknown shop")  # never cached: a new shop works at once
    settings = await ShopSettingsRepository(request.app[DATABASE]).get(shop_id, TrackingSettings)
    if len(cache) >= CONFIG_CACHE_MAX:
        cache.clear()
    cache[shop_id] = _Config(settings, time.monotonic() + CONFIG_TTL_SECONDS)
    return shop_id, settings


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _check_sender(request: web.Request, shop_id: str, origin: str | None, settings: TrackingSettings) -> None:
    """A page of the shop (an allowed Origin), or the shop's own servers (its API key, when opted in)."""
    key = _bearer(request)
    if key is not None:
        if not settings.server_side_events:
            raise ApiError(403, "server_side_events_disabled",
                           "this shop does not accept server-side events (tracking setting server_side_events)",
                           "Authorization")
        # Read fresh (not cached): a rotated key stops working at once, as on the admin API.
        shop = await ShopRepository(request.app[DATABASE]).get(shop_id)
        presented = hash_api_key(key)
        if shop is None or not any(hmac.compare_digest(stored, presented)
                                   for stored in shop.doc.get("api_key_hashes", [])):
            raise ApiError(401, "invalid_api_key", "the API key is not valid for this shop", "Authorization")
        return
    # Browsers always send Origin on cross-site POSTs; a request without one is not from a page.
    if origin is None:
        raise ApiError(403, "origin_required", "events must come from one of the shop's pages (Origin)", "Origin")
    if origin not in settings.allowed_origins:
        raise ApiError(403, "origin_not_allowed", "this origin may not send events for this shop", "Origin")


async def _store(app: web.Application, submission: Submission) -> Verdict:
    try:
        (verdict,) = await app[TRACKING_WRITES].submit([submission])
    except (PyMongoError, TimeoutError) as exc:
        log.warning("storing browser events of shop %s failed: %r", submission.shop_id, exc)
        raise ApiError(503, "unavailable", "the events could not be stored; try again later") from None
    if verdict.refused == "shop":
        raise ApiError(429, "rate_limited", "too many events for this shop; try again in a minute")
    if verdict.refused == "browser":
        raise ApiError(429, "rate_limited", "too many events from this browser; try again in a minute", "browser_id")
    return verdict


async def post_events(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    headers: dict[str, str] = {"Vary": "Origin"}
    try:
        if not writable(request.app[DATABASE]):  # known to be down: say so at once rather than wait for it
            raise ApiError(503, "unavailable", "the database is unavailable; try again later")
        try:
            with pymongo.timeout(ACK_TIMEOUT_SECONDS):
                shop_id, settings = await _shop_tracking(request)
                headers = cors_headers(origin, settings.allowed_origins)
                await _check_sender(request, shop_id, origin, settings)
        except (PyMongoError, TimeoutError):
            raise ApiError(503, "unavailable", "the database is unavailable; try again later") from None
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"at most {MAX_BODY_BYTES} bytes per request")
        raw = await request.read()  # bounded by the app's client_max_size even without Content-Length
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"at most {MAX_BODY_BYTES} bytes per request")
        if not raw:
            raise ApiError(400, "invalid_json", "request body must be a JSON document")
        events = parse_events(raw)
        now: datetime = request.app[CLOCK].now()
        await _store(request.app, Submission(shop_id, [event.model_dump(exclude_none=True) for event in events], now,
                                             settings.events_per_minute))
    except ApiError as exc:
        response = exc.response()
        response.headers.update(headers)
        if exc.status in (429, 503):
            response.headers["Retry-After"] = "60" if exc.status == 429 else "5"
        return response
    return web.Response(status=204, headers=headers)


async def preflight(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    _, settings = await _shop_tracking(request)
    allowed = settings.allowed_origins
    method = request.headers.get("Access-Control-Request-Method", "")
    if origin is None or origin not in allowed or method.upper() != "POST":
        raise ApiError(403, "origin_not_allowed", "this origin may not send events for this shop", "Origin")
    return web.Response(
        status=204,
        headers={
            **cors_headers(origin, allowed),
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        },
    )


async def _writes_ctx(app: web.Application) -> AsyncIterator[None]:
    """The group writer of browser events and the processor behind it (after the database context)."""
    db = app[DATABASE]
    clock = app[CLOCK]
    budgets = Budgets(BrowserBudgets(EVENTS_PER_BROWSER_PER_MINUTE))
    app[BROWSER_BUDGETS] = budgets.browsers
    batches = TrackingBatchRepository(db)  # one per process: its stored batches share one claim

    async def write(submissions: list[Submission]) -> list[Verdict]:
        with pymongo.timeout(GROUP_TIMEOUT_SECONDS):
            acknowledged = await acknowledge(db, submissions, budgets, clock.now(), batches)
        processor.submit(acknowledged.items)
        return acknowledged.verdicts

    writes: GroupCommit[Submission, Verdict] = GroupCommit(
        write, max_items=GROUP_MAX_REQUESTS, window=GROUP_WINDOW_SECONDS, max_in_flight=GROUP_WRITES_IN_FLIGHT)
    processor = EventProcessor(db, clock.now, DatabaseTurn(writes.idle))
    processor.start()
    app[TRACKING_WRITES] = writes
    app[EVENT_PROCESSOR] = processor

    recovery = Periodic(processor.recover, RECOVERY_INTERVAL_SECONDS, "browser-event recovery")
    recovery.start()
    yield
    await recovery.stop()
    with contextlib.suppress(Exception):
        await writes.close()
    await processor.stop(STOP_GRACE_SECONDS)


async def events_applied(app: web.Application) -> None:
    """Until every browser event acknowledged so far is applied (tests, benchmarks)."""
    await app[TRACKING_WRITES].idle()
    await app[EVENT_PROCESSOR].flush()


def setup_tracking(app: web.Application) -> None:
    app[CONFIGS] = {}
    app.router.add_post("/t/{shop_id}/events", post_events)
    app.router.add_route("OPTIONS", "/t/{shop_id}/events", preflight)
    app.cleanup_ctx.append(_writes_ctx)
