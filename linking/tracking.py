"""`POST /t/{shop_id}/events`: browser events from the shop's pages (the tracking script).

Order of work, so junk and floods change nothing: shop and CORS origin → body
size and JSON → pydantic validation of every event → the per-browser budget
(in MongoDB, shared by every web process) → persist (events unique by the
client's event ID, the browser's view counters by `$inc` in one bulk write) →
204. Only events stored now count, so a retried beacon never double-counts a
view. Views of a linked browser are attributed to its LINE user and announced
with the durable `product_viewed` signal.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from admin_api.models import Identifier
from bot.typedefs import CLOCK, DATABASE
from core.errors import ApiError, from_validation_error
from linking.models import BrowserId, EventId, PageUrl, ShortValue
from storage.browsers import BrowserRepository, ViewCount
from storage.database import Database, Document
from storage.events import EventRepository, event_key
from storage.shop_settings import ShopSettingsRepository, TrackingSettings
from storage.shops import ShopRepository
from storage.signals import deliver_all, drop_all

MAX_BODY_BYTES = 32 * 1024
MAX_BATCH = 20
EVENTS_PER_BROWSER_PER_MINUTE = 120
PREFLIGHT_MAX_AGE = "600"


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


def event_document(shop_id: str, event: BrowserEvent, received_at: datetime) -> Document:
    doc: Document = {"_id": event_key(shop_id, event.event_id), "shop_id": shop_id, "received_at": received_at}
    doc.update(event.model_dump(exclude_none=True))
    return doc


def first_seen_fields(events: list[BrowserEvent]) -> dict[str, Any]:
    """What a new browser remembers of its landing (first UTM and referrer)."""
    first = events[0]
    return {
        "first_utm": first.utm.model_dump(exclude_none=True) if first.utm else None,
        "first_referrer": first.referrer,
    }


def view_counts(events: list[BrowserEvent], stored: set[str], now: datetime) -> list[ViewCount]:
    """Product page views among the events stored now, counted per product."""
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        if event.type == "page_view" and event.product_id and event.event_id in stored:
            counts[event.product_id] += 1
    return [ViewCount(product_id, count, now, now) for product_id, count in counts.items()]


async def ingest(db: Database, shop_id: str, events: list[BrowserEvent], now: datetime) -> int:
    """Persist a validated batch; returns how many events were new. Raises 429 when a browser is over budget."""
    by_browser: dict[str, list[BrowserEvent]] = defaultdict(list)
    for event in events:
        by_browser[event.browser_id].append(event)
    browsers = BrowserRepository(db)
    for browser_id, own in by_browser.items():
        allowed = await browsers.take_budget(
            shop_id, browser_id, len(own), EVENTS_PER_BROWSER_PER_MINUTE, now, first_seen_fields(own)
        )
        if not allowed:
            raise ApiError(429, "rate_limited", "too many events from this browser; try again in a minute", "browser_id")
    # The views' intents go first (durable signals): a crash after the events are stored leaves them
    # for the worker, whose listeners recompute from the view rows.
    viewed = {browser_id: sorted({e.product_id for e in own if e.type == "page_view" and e.product_id})
              for browser_id, own in by_browser.items()}
    viewed = {browser_id: products for browser_id, products in viewed.items() if products}
    known = await browsers.line_users(shop_id, viewed) if viewed else {}
    planned = [(b, pid) for b, products in viewed.items() if known.get(b) for pid in products]
    intents = await db.signals.product_viewed.intend_many(db, [(shop_id, known[b], pid, now) for b, pid in planned],
                                                          now)
    documents = [event_document(shop_id, event, now) for event in events]
    flow_events = await _flow_events(browsers, shop_id, documents, known)
    events_intent = await db.signals.browser_events.intend(db, shop_id, flow_events, now, now=now) \
        if flow_events else None
    stored = await EventRepository(db).insert_new(documents)
    new_views: dict[str, list[ViewCount]] = {}
    first_views: dict[str, list[str]] = {}
    for browser_id, own in by_browser.items():
        views = view_counts(own, stored, now)
        if views:
            new_views[browser_id] = views
            first_views[browser_id] = await browsers.add_views(shop_id, browser_id, views)
    late = []
    if new_views:
        # Read the owner after writing the views: a link racing with us either sees our new
        # view documents or we see its owner, so no view is left unattributed.
        owners = await browsers.line_users(shop_id, new_views)
        for browser_id, views in new_views.items():
            line_user_id = owners.get(browser_id)
            if not line_user_id:
                continue
            if first_views[browser_id]:
                await browsers.claim_views(shop_id, browser_id, line_user_id)
            if line_user_id != known.get(browser_id):  # linked (or moved) while we wrote: no intent yet
                late += [(shop_id, line_user_id, view.product_id, now) for view in views]
    fresh = {(b, view.product_id) for b, views in new_views.items() for view in views}
    replayed = [intent for intent, view in zip(intents, planned, strict=True) if view not in fresh]
    delivered = [intent for intent, view in zip(intents, planned, strict=True) if view in fresh]
    if events_intent is not None:
        (delivered if stored else replayed).append(events_intent)
    await drop_all(replayed)
    await deliver_all(delivered + await db.signals.product_viewed.intend_many(db, late, now))
    return len(stored)


async def _flow_events(browsers: BrowserRepository, shop_id: str, documents: list[Document],
                       owners: dict[str, str | None]) -> list[Document]:
    """The events the flows hear (`browser_events`): carts, checkouts and purchases of any browser (a cart
    may belong to a customer linked later), page views of linked browsers; each with its owner."""
    unknown = {doc["browser_id"] for doc in documents} - set(owners)  # e.g. views of pages that are not products
    if unknown:
        owners = {**owners, **await browsers.line_users(shop_id, unknown)}
    wanted = [doc for doc in documents if doc["type"] != "page_view" or owners.get(doc["browser_id"])]
    return [{**doc, "line_user_id": owners.get(doc["browser_id"])} for doc in wanted]


def cors_headers(origin: str | None, allowed: list[str]) -> dict[str, str]:
    """CORS answers only for the shop's configured origins; `Vary` keeps caches honest."""
    if origin is None or origin not in allowed:
        return {"Vary": "Origin"}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@dataclass(frozen=True)
class _Origins:
    origins: list[str]
    expires: float


# A per-process copy of each known shop's allowed origins, kept a few seconds: it saves two
# round trips per event request, and a changed setting reaches every process within the TTL.
ORIGINS: web.AppKey[dict[str, _Origins]] = web.AppKey("tracking_origins", dict)
ORIGINS_TTL_SECONDS = 10.0
ORIGINS_CACHE_MAX = 10_000


async def _shop_origins(request: web.Request) -> tuple[str, list[str]]:
    shop_id = request.match_info["shop_id"]
    cache = request.app[ORIGINS]
    cached = cache.get(shop_id)
    if cached is not None and cached.expires > time.monotonic():
        return shop_id, cached.origins
    db = request.app[DATABASE]
    if await ShopRepository(db).get(shop_id) is None:
        raise ApiError(404, "not_found", "unknown shop")  # never cached: a new shop works at once
    settings = await ShopSettingsRepository(db).get(shop_id, TrackingSettings)
    if len(cache) >= ORIGINS_CACHE_MAX:
        cache.clear()
    cache[shop_id] = _Origins(settings.allowed_origins, time.monotonic() + ORIGINS_TTL_SECONDS)
    return shop_id, settings.allowed_origins


def _check_origin(origin: str | None, allowed: list[str]) -> None:
    # Browsers always send Origin on cross-site POSTs; a request without one is not from a page.
    if origin is not None and origin not in allowed:
        raise ApiError(403, "origin_not_allowed", "this origin may not send events for this shop", "Origin")


async def post_events(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    headers: dict[str, str] = {"Vary": "Origin"}
    try:
        shop_id, allowed = await _shop_origins(request)
        headers = cors_headers(origin, allowed)
        _check_origin(origin, allowed)
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"at most {MAX_BODY_BYTES} bytes per request")
        raw = await request.read()  # bounded by the app's client_max_size even without Content-Length
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"at most {MAX_BODY_BYTES} bytes per request")
        if not raw:
            raise ApiError(400, "invalid_json", "request body must be a JSON document")
        events = parse_events(raw)
        await ingest(request.app[DATABASE], shop_id, events, request.app[CLOCK].now())
    except ApiError as exc:
        response = exc.response()
        response.headers.update(headers)
        if exc.status == 429:
            response.headers["Retry-After"] = "60"
        return response
    return web.Response(status=204, headers=headers)


async def preflight(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    _, allowed = await _shop_origins(request)
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


def setup_tracking(app: web.Application) -> None:
    app[ORIGINS] = {}
    app.router.add_post("/t/{shop_id}/events", post_events)
    app.router.add_route("OPTIONS", "/t/{shop_id}/events", preflight)
