"""Admin routes for segments: saved filters, their preview (count and sample), their own rich menu."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from admin_api.models import Identifier, Label, Limit, StrictModel, path_id
from admin_api.registry import SHOP_PATH, AdminApi, Call, Reply
from core.errors import ApiError
from storage.segments import Preview, SegmentFilter, SegmentRepository, audience_query, preview
from storage.shop_settings import RichMenuSettings

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`
SAMPLE = 10


class SegmentBody(StrictModel):
    name: Label
    filter: SegmentFilter = Field(default_factory=SegmentFilter)
    rich_menu: RichMenuSettings | None = Field(
        default=None, description="the segment's own rich menu (rendered like the default one), linked to its "
                                  "members; members who leave fall back to the default at the next refresh")


class MenuState(BaseModel):
    rich_menu_id: str | None = None
    members: int = 0
    deployed_at: datetime | None = None


class SegmentView(BaseModel):
    segment_id: str
    name: str
    filter: SegmentFilter
    rich_menu: RichMenuSettings | None = None
    menu: MenuState | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SegmentPage(BaseModel):
    items: list[SegmentView]
    next_after: str | None


class SegmentQuery(StrictModel):
    limit: Limit = 50
    after: Identifier | None = None


class PreviewView(BaseModel):
    count: int = Field(description="reachable friends who match now")
    sample: list[str] = Field(description=f"up to {SAMPLE} of them (LINE user IDs)")


def segment_view(doc: dict[str, Any]) -> SegmentView:
    return SegmentView.model_validate({**doc, "filter": doc.get("filter") or {}})


async def segment_or_404(call: Call[Any, Any], segment_id: str) -> dict[str, Any]:
    doc = await SegmentRepository(call.db).get(call.current_shop.shop_id, segment_id)
    if doc is None or doc.get("deleted"):
        raise ApiError(404, "not_found", "no such segment", "segment_id")
    return doc


async def _preview(call: Call[Any, Any], spec: SegmentFilter) -> PreviewView:
    found: Preview = await preview(call.db, audience_query(call.current_shop.shop_id, spec, call.now()), SAMPLE)
    return PreviewView(count=found.count, sample=found.sample)


@routes.route("PUT", SHOP_PATH + "/segments/{segment_id}", summary="Create or replace a segment", body=SegmentBody,
              response=SegmentView, tag="segments", extra_statuses={201: "created"})
async def put_segment(call: Call[SegmentBody, None]) -> Reply:
    segment_id = path_id(call, "segment_id")
    body = call.body
    fields = {"name": body.name, "filter": body.filter.stored(), "deleted": False,
              "rich_menu": body.rich_menu.model_dump(mode="json") if body.rich_menu else None}
    repo = SegmentRepository(call.db)
    shop_id = call.current_shop.shop_id
    before = await repo.get(shop_id, segment_id)
    doc, _ = await repo.put(shop_id, segment_id, fields, call.now())
    await repo.request_refresh(shop_id, segment_id, call.now())
    return Reply(201 if before is None or before.get("deleted") else 200, segment_view(doc))


@routes.route("GET", SHOP_PATH + "/segments/{segment_id}", summary="Read a segment", response=SegmentView,
              tag="segments")
async def get_segment(call: Call[None, None]) -> SegmentView:
    return segment_view(await segment_or_404(call, path_id(call, "segment_id")))


@routes.route("DELETE", SHOP_PATH + "/segments/{segment_id}", summary="Delete a segment (its rich menu is "
              "unlinked from its members by the worker)", status=204, tag="segments")
async def delete_segment(call: Call[None, None]) -> None:
    segment_id = path_id(call, "segment_id")
    await segment_or_404(call, segment_id)
    repo = SegmentRepository(call.db)
    await repo.put(call.current_shop.shop_id, segment_id, {"deleted": True, "rich_menu": None}, call.now())
    await repo.request_refresh(call.current_shop.shop_id, segment_id, call.now())


@routes.route("GET", SHOP_PATH + "/segments", summary="List segments (by segment_id)", query=SegmentQuery,
              response=SegmentPage, tag="segments")
async def list_segments(call: Call[None, SegmentQuery]) -> SegmentPage:
    q = call.query
    docs = await SegmentRepository(call.db).page(call.current_shop.shop_id, q.after, q.limit + 1)
    live = [doc for doc in docs[:q.limit] if not doc.get("deleted")]
    return SegmentPage(items=[segment_view(d) for d in live],
                       next_after=docs[q.limit - 1]["segment_id"] if len(docs) > q.limit else None)


@routes.route("GET", SHOP_PATH + "/segments/{segment_id}/preview",
              summary="How many reachable friends the segment holds now, and a sample", response=PreviewView,
              tag="segments")
async def preview_segment(call: Call[None, None]) -> PreviewView:
    doc = await segment_or_404(call, path_id(call, "segment_id"))
    return await _preview(call, SegmentFilter.model_validate(doc.get("filter") or {}))


@routes.route("POST", SHOP_PATH + "/segments/preview",
              summary="Preview a filter before saving it (count and sample of reachable friends)",
              body=SegmentFilter, response=PreviewView, tag="segments")
async def preview_filter(call: Call[SegmentFilter, None]) -> PreviewView:
    return await _preview(call, call.body)


@routes.route("POST", SHOP_PATH + "/segments/{segment_id}/rich-menu/refresh",
              summary="Relink the segment's rich menu to its members at the worker's next tick", status=202,
              tag="segments")
async def refresh_segment_menu(call: Call[None, None]) -> dict[str, str]:
    segment_id = path_id(call, "segment_id")
    doc = await segment_or_404(call, segment_id)
    if not doc.get("rich_menu"):
        raise ApiError(409, "conflict", "the segment has no rich menu of its own", "rich_menu")
    await SegmentRepository(call.db).request_refresh(call.current_shop.shop_id, segment_id, call.now())
    return {"status": "queued"}
