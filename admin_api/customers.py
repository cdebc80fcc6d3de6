"""Admin routes for customers: read one (with browsers, tags, points, totals), list, tags/rank in bulk, ID mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pymongo.errors import DuplicateKeyError

from admin_api.models import Identifier, Label, Limit, StrictModel, Tag, Tags, path_id, unique
from admin_api.orders import Email
from admin_api.registry import SHOP_PATH, AdminApi, Call
from core.errors import ApiError
from storage.customers import CustomerRepository
from storage.keys import browser_key
from storage.points import PointsRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`

LineUserIds = Annotated[list[Identifier], Field(min_length=1, max_length=1000)]


class PointsView(BaseModel):
    balance: int
    soonest_expiring_amount: int | None
    soonest_expiry_at: datetime | None


class Totals(BaseModel):
    purchase_count: int = 0
    total_spend: int = 0
    first_seen_at: datetime | None = None
    last_purchase_at: datetime | None = None


class BrowserView(BaseModel):
    browser_id: str
    linked_at: datetime | None = None
    link_method: str | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None


class CustomerSummary(BaseModel):
    line_user_id: str
    display_name: str | None = None
    friend: bool
    blocked: bool
    opted_out: bool
    linked: bool
    tags: list[str]
    rank: str | None = None
    shop_customer_id: str | None = None
    totals: Totals


class CustomerView(CustomerSummary):
    picture_url: str | None = None
    language: str | None = None
    email: str | None = None
    followed_at: datetime | None = None
    unfollowed_at: datetime | None = None
    browsers: list[BrowserView]
    points: PointsView
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CustomerPage(BaseModel):
    items: list[CustomerSummary]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last page")


class CustomerQuery(StrictModel):
    limit: Limit = 50
    after: Identifier | None = Field(default=None, description="the last line_user_id of the previous page")
    tag: Tag | None = None
    rank: Label | None = None
    friend: bool | None = None
    blocked: bool | None = None
    opted_out: bool | None = None
    linked: bool | None = None


class CustomerPatch(StrictModel):
    """Merchant-owned fields; `null` clears rank, e-mail or the shop customer ID."""

    rank: Label | None = None
    email: Email | None = None
    shop_customer_id: Identifier | None = None
    tags: Tags | None = Field(default=None, description="replaces the whole tag list")


class TagsBulk(StrictModel):
    """Add and/or remove tags (e.g. `subscription-123-plan:定期便A`) and optionally set the rank for many customers."""

    line_user_ids: LineUserIds
    add: Tags = Field(default_factory=list)
    remove: Tags = Field(default_factory=list)
    rank: Label | None = Field(default=None, description="set this rank; send null explicitly to clear it")



class Mapping(StrictModel):
    shop_customer_id: Identifier
    line_user_id: Identifier


class MappingsBulk(StrictModel):
    mappings: Annotated[list[Mapping], Field(min_length=1, max_length=1000)]

    @field_validator("mappings")
    @classmethod
    def _unique(cls, mappings: list[Mapping]) -> list[Mapping]:
        unique(mappings, lambda m: m.shop_customer_id, "shop_customer_id")
        return unique(mappings, lambda m: m.line_user_id, "line_user_id")


class Updated(BaseModel):
    updated: int


def _id_taken() -> ApiError:
    """Two concurrent writes gave one shop customer ID to two customers; the loser is told to retry."""
    return ApiError(409, "conflict", "shop_customer_id: being assigned concurrently; retry", "shop_customer_id")


async def customer_view(call: Call[Any, Any], doc: dict[str, Any]) -> CustomerView:
    shop_id = call.current_shop.shop_id
    browser_keys = [browser_key(shop_id, browser_id) for browser_id in doc.get("browser_ids", [])]
    browsers = [BrowserView.model_validate(b) async for b in call.db["browsers"].find({"_id": {"$in": browser_keys}})]
    summary = await PointsRepository(call.db).summary(shop_id, doc["line_user_id"], call.now())
    return CustomerView.model_validate(
        {**doc, "totals": doc.get("totals") or {}, "tags": doc.get("tags", []), "linked": bool(doc.get("linked")),
         "browsers": browsers, "points": PointsView(**summary.__dict__)}
    )


def summary_view(doc: dict[str, Any]) -> CustomerSummary:
    return CustomerSummary.model_validate(
        {**doc, "totals": doc.get("totals") or {}, "tags": doc.get("tags", []), "linked": bool(doc.get("linked"))}
    )


@routes.route("GET", SHOP_PATH + "/customers/{line_user_id}", summary="Read a customer", response=CustomerView, tag="customers")
async def get_customer(call: Call[None, None]) -> CustomerView:
    doc = await CustomerRepository(call.db).get(call.current_shop.shop_id, path_id(call, "line_user_id"))
    if doc is None:
        raise ApiError(404, "not_found", "no such customer", "line_user_id")
    return await customer_view(call, doc)


@routes.route("PATCH", SHOP_PATH + "/customers/{line_user_id}", summary="Set rank, e-mail, shop customer ID or tags",
           body=CustomerPatch, response=CustomerView, tag="customers")
async def patch_customer(call: Call[CustomerPatch, None]) -> CustomerView:
    line_user_id = path_id(call, "line_user_id")
    fields = call.body.model_dump(exclude_unset=True)
    if fields.get("tags", []) is None:
        raise ApiError(422, "validation_error", "tags: cannot be null", "tags")
    repository = CustomerRepository(call.db)
    shop_id = call.current_shop.shop_id
    if fields:
        try:
            await repository.update_fields(shop_id, line_user_id, fields, call.now())
        except DuplicateKeyError:
            raise _id_taken() from None
    doc = await repository.get(shop_id, line_user_id)
    if doc is None:
        raise ApiError(404, "not_found", "no such customer", "line_user_id")
    return await customer_view(call, doc)


@routes.route("GET", SHOP_PATH + "/customers", summary="List customers (paged by line_user_id, filtered)",
           query=CustomerQuery, response=CustomerPage, tag="customers")
async def list_customers(call: Call[None, CustomerQuery]) -> CustomerPage:
    q = call.query
    docs = await CustomerRepository(call.db).list_page(
        call.current_shop.shop_id, after=q.after, limit=q.limit, tag=q.tag, rank=q.rank, friend=q.friend,
        blocked=q.blocked, opted_out=q.opted_out, linked=q.linked,
    )
    return CustomerPage(
        items=[summary_view(doc) for doc in docs],
        next_after=docs[-1]["line_user_id"] if len(docs) == q.limit else None,
    )


@routes.route("POST", SHOP_PATH + "/customers/tags", summary="Add/remove tags and set rank for many customers",
           body=TagsBulk, response=Updated, tag="customers")
async def bulk_tags(call: Call[TagsBulk, None]) -> Updated:
    body = call.body
    if set(body.add) & set(body.remove):
        raise ApiError(422, "validation_error", "remove: a tag cannot be both added and removed", "remove")
    if not (body.add or body.remove or "rank" in body.model_fields_set):
        raise ApiError(422, "validation_error", "add: nothing to do (give add, remove or rank)", "add")
    fields = {"rank": body.rank} if "rank" in body.model_fields_set else {}
    user_ids = list(dict.fromkeys(body.line_user_ids))
    await CustomerRepository(call.db).bulk_tags(call.current_shop.shop_id, user_ids, body.add, body.remove, fields, call.now())
    return Updated(updated=len(user_ids))


@routes.route("POST", SHOP_PATH + "/customers/mappings", summary="Record shop customer ID -> LINE user mappings",
           body=MappingsBulk, response=Updated, tag="customers")
async def post_mappings(call: Call[MappingsBulk, None]) -> Updated:
    pairs = [(m.shop_customer_id, m.line_user_id) for m in call.body.mappings]
    try:
        await CustomerRepository(call.db).map_shop_customer_ids(call.current_shop.shop_id, pairs, call.now())
    except DuplicateKeyError:
        raise _id_taken() from None
    return Updated(updated=len(pairs))
