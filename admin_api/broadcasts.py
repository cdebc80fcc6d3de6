"""Admin routes for broadcasts: create (now or at `send_at`), progress and figures, cancel, the period report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast

from pydantic import BaseModel, Field

from admin_api.models import Identifier, Instant, ReportQuery, StrictModel, TimeCursorQuery, path_id, report_period
from admin_api.registry import SHOP_PATH, AdminApi, Call, Reply
from admin_api.reminders import FlowReportView
from core.clock import as_utc
from core.errors import ApiError
from core.line_schema import message_errors
from delivery.report import MAX_WINDOW, flow_report
from flows.broadcasts.create import broadcast_document
from flows.broadcasts.plan import FLOW
from flows.broadcasts.runner import broadcast_delivery_key
from storage.broadcasts import MAX_SPAN, BroadcastRepository
from storage.delivery_log import DeliveryLog
from storage.paging import encode_cursor
from storage.segments import SegmentFilter, SegmentRepository, audience_query, preview

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`
MAX_AHEAD = timedelta(days=366)
LineMessages = Annotated[list[dict[str, Any]], Field(min_length=1, max_length=5,
                                                     description="LINE message objects (checked against LINE's schema)")]


class BroadcastBody(StrictModel):
    broadcast_id: Identifier
    segment_id: Identifier
    messages: LineMessages
    send_at: Instant | None = Field(default=None, description="ISO 8601 with offset; omitted or past: now")


class Created(BaseModel):
    broadcast_id: str
    status: str
    targeted: int


class BroadcastView(BaseModel):
    broadcast_id: str
    segment_id: str
    status: str = Field(description="scheduled | sending | done | cancelled")
    targeted: int = Field(description="the segment's size when created; the frozen audience once sending")
    sent: int = Field(description="recipients of accepted multicasts")
    failed: int
    held: int = Field(description="held out by the shop's holdout (recorded, not sent)")
    skipped: dict[str, int] = Field(description="left out at send time, by reason (blocked, opted_out, frequency_cap…)")
    unsent: int = Field(description="recipients of batches a cancel stopped")
    clicks: int
    conversions: int
    revenue: int
    batches: int
    batches_done: int
    send_at: datetime
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancelled_at: datetime | None = None
    messages: list[dict[str, Any]]


class BroadcastPage(BaseModel):
    items: list[BroadcastView]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last page")


class BroadcastReportQuery(ReportQuery):
    broadcast_id: Identifier | None = Field(default=None, description="only this broadcast")


async def _figures(call: Call[Any, Any], doc: dict[str, Any]) -> tuple[int, int, int]:
    """Clicks, conversions and revenue of one broadcast (its key names them)."""
    start = doc.get("started_at")
    if start is None:
        return 0, 0, 0
    records = DeliveryLog(call.db)
    end = start + MAX_SPAN + MAX_WINDOW  # the last batch's last attributable order, whatever the clock says
    clicks = await records.clicks_of(str(doc["key"]), start, end)
    conversions = revenue = 0
    async for conversion in records.conversions(call.current_shop.shop_id, FLOW, start, end):
        if conversion.get("key") == doc["key"] and conversion.get("group") != "holdout":
            conversions += 1
            revenue += int(conversion.get("revenue") or 0)
    return clicks, conversions, revenue


async def broadcast_view(call: Call[Any, Any], doc: dict[str, Any]) -> BroadcastView:
    counts = doc.get("counts") or {}
    clicks, conversions, revenue = await _figures(call, doc)
    return BroadcastView(
        broadcast_id=doc["broadcast_id"], segment_id=doc["segment_id"], status=doc["status"],
        targeted=int(doc.get("targeted") or 0), sent=int(counts.get("sent") or 0),
        failed=int(counts.get("failed") or 0), held=int(counts.get("held") or 0),
        skipped={k: int(v) for k, v in (counts.get("skipped") or {}).items()},
        unsent=int(counts.get("cancelled") or 0), clicks=clicks, conversions=conversions, revenue=revenue,
        batches=int(doc.get("batches") or 0), batches_done=len(doc.get("settled") or []), send_at=doc["send_at"],
        created_at=doc["created_at"], started_at=doc.get("started_at"), finished_at=doc.get("finished_at"),
        cancelled_at=doc.get("cancelled_at"), messages=doc.get("messages") or [])


def _same(doc: dict[str, Any], body: BroadcastBody, send_at: datetime | None) -> bool:
    return (doc.get("segment_id") == body.segment_id and doc.get("messages") == body.messages
            and (send_at is None or doc.get("send_at") == send_at))


@routes.route("POST", SHOP_PATH + "/broadcasts", summary="Broadcast 1-5 messages to a segment, now or at send_at",
              body=BroadcastBody, response=Created, status=201, tag="broadcasts",
              extra_statuses={200: "the same broadcast_id again: nothing new", 409: "broadcast_id taken by another body"})
async def create_broadcast(call: Call[BroadcastBody, None]) -> Any:
    body, shop_id, now = call.body, call.current_shop.shop_id, call.now()
    problems = message_errors(body.messages)
    if problems:  # what LINE would refuse at send time, refused now with its field
        field, message = problems[0]
        raise ApiError(422, "validation_error", f"{field}: {message}", field)
    send_at = max(body.send_at.astimezone(UTC), now) if body.send_at is not None else now
    send_at = send_at.replace(microsecond=send_at.microsecond // 1000 * 1000)  # MongoDB keeps milliseconds
    if send_at - now > MAX_AHEAD:
        raise ApiError(422, "validation_error", "send_at: at most a year ahead", "send_at")
    repo = BroadcastRepository(call.db)
    existing = await repo.get(shop_id, body.broadcast_id)
    if existing is not None:
        if not _same(existing, body, send_at if body.send_at is not None else None):
            raise ApiError(409, "conflict", "broadcast_id: already used for another broadcast", "broadcast_id")
        return Reply(200, Created(broadcast_id=body.broadcast_id, status=existing["status"],
                                  targeted=int(existing.get("targeted") or 0)))
    segment = await SegmentRepository(call.db).get(shop_id, body.segment_id)
    if segment is None or segment.get("deleted"):
        raise ApiError(422, "validation_error", "segment_id: no such segment", "segment_id")
    spec = SegmentFilter.model_validate(segment.get("filter") or {})
    targeted = (await preview(call.db, audience_query(shop_id, spec, now), sample=0)).count
    doc = broadcast_document(shop_id, body.broadcast_id, body.segment_id, spec, body.messages, send_at, now, targeted)
    stored, created = await repo.create(doc)
    if not created and not _same(stored, body, send_at if body.send_at is not None else None):
        raise ApiError(409, "conflict", "broadcast_id: already used for another broadcast", "broadcast_id")
    return Reply(201 if created else 200, Created(broadcast_id=body.broadcast_id, status=stored["status"],
                                                  targeted=int(stored.get("targeted") or 0)))


@routes.route("GET", SHOP_PATH + "/broadcasts", summary="The shop's broadcasts, newest first", query=TimeCursorQuery,
              response=BroadcastPage, tag="broadcasts")
async def list_broadcasts(call: Call[None, TimeCursorQuery]) -> BroadcastPage:
    docs = await BroadcastRepository(call.db).page(call.current_shop.shop_id, call.query.after, call.query.limit)
    last = docs[-1] if len(docs) == call.query.limit else None
    return BroadcastPage(items=[await broadcast_view(call, doc) for doc in docs],
                         next_after=encode_cursor(as_utc(last["created_at"]), last["_id"]) if last else None)


async def _broadcast_or_404(call: Call[Any, Any]) -> dict[str, Any]:
    doc = await BroadcastRepository(call.db).get(call.current_shop.shop_id, path_id(call, "broadcast_id"))
    if doc is None:
        raise ApiError(404, "not_found", "no such broadcast", "broadcast_id")
    return doc


@routes.route("GET", SHOP_PATH + "/broadcasts/{broadcast_id}", summary="A broadcast's status, progress and figures",
              response=BroadcastView, tag="broadcasts")
async def get_broadcast(call: Call[None, None]) -> BroadcastView:
    return await broadcast_view(call, await _broadcast_or_404(call))


@routes.route("POST", SHOP_PATH + "/broadcasts/{broadcast_id}/cancel",
              summary="Cancel while scheduled or sending: what is not yet sent stays unsent",
              response=BroadcastView, tag="broadcasts", extra_statuses={409: "already done"})
async def cancel_broadcast(call: Call[None, None]) -> BroadcastView:
    doc = await _broadcast_or_404(call)
    if doc["status"] == "done":
        raise ApiError(409, "conflict", "the broadcast is done", "broadcast_id")
    cancelled = await BroadcastRepository(call.db).cancel(call.current_shop.shop_id, doc["broadcast_id"], call.now())
    assert cancelled is not None
    if cancelled["status"] == "done":  # it finished while we asked
        raise ApiError(409, "conflict", "the broadcast is done", "broadcast_id")
    return await broadcast_view(call, cancelled)


@routes.route("GET", SHOP_PATH + "/reports/broadcasts",
              summary="Broadcasts over a period (or one broadcast): sent, held, skipped, clicks, conversions, lift",
              query=BroadcastReportQuery, response=FlowReportView, tag="reports")
async def broadcast_report(call: Call[None, BroadcastReportQuery]) -> dict[str, Any]:
    shop_id = call.current_shop.shop_id
    start, end = report_period(cast("Call[Any, ReportQuery]", call))  # its query is a ReportQuery
    key = broadcast_delivery_key(shop_id, call.query.broadcast_id) if call.query.broadcast_id else None
    report = await flow_report(call.db, shop_id, FLOW, start, end, key=key)
    return report.as_dict()

