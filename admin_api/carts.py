"""Admin routes of carts (カゴ落ち): a platform's cart, reading one, the customer search by cart state, the dry
run and the report (thin: parse → domain → reply)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError, field_validator

from admin_api.models import (
    Identifier,
    Instant,
    Label,
    Limit,
    ReportQuery,
    StrictModel,
    Url,
    Yen,
    report_period,
    to_millis,
)
from admin_api.orders import CartToken
from admin_api.registry import SHOP_PATH, AdminApi, Call, Reply
from bot.typedefs import SETTINGS
from core.errors import ApiError
from delivery.report import GroupFigures
from delivery.stats import Lift
from flows.carts.preview import cart_dry_run
from flows.carts.report import cart_report
from flows.carts.search import search_carts
from flows.carts.state import put_cart
from storage.carts import CartContention, CartRepository, CartSearch
from storage.paging import decode_cursor, encode_cursor

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`

CartState = Literal["open", "ordered", "emptied"]
Amount = Annotated[int, Field(ge=0, le=1_000_000_000, description="yen")]


class CartItem(StrictModel):
    product_id: Identifier = Field(description="a product unknown to the catalogue is kept and shown as the line says")
    variant_id: Identifier | None = None
    quantity: Annotated[int, Field(strict=True, ge=1, le=100_000)]
    price: Yen = Field(description="unit price in yen")
    title: Label | None = Field(default=None, description="shown when the product is not in the catalogue")
    image_url: Url | None = Field(default=None, description="shown when the product is not in the catalogue")


class CartBody(StrictModel):
    """A shop platform's whole cart; give whichever customer identity it knows. `items: []` empties the cart."""

    line_user_id: Identifier | None = None
    browser_id: Identifier | None = None
    customer_id: Identifier | None = Field(default=None, description="the shop's own customer ID")
    items: Annotated[list[CartItem], Field(max_length=100)]
    stage: Literal["cart", "checkout"] = "cart"
    updated_at: AwareDatetime | None = Field(default=None, description="the platform's time of this state; an "
                                                                       "older one than stored is ignored")


class CartLine(BaseModel):
    product_id: str
    variant_id: str | None = None
    quantity: int
    price: int | None = None
    title: str | None = None
    image_url: str | None = None


class CartView(BaseModel):
    cart_token: str
    state: CartState
    stage: str
    items: list[CartLine]
    value: int = Field(description="yen")
    line_user_id: str | None = None
    browser_id: str | None = None
    customer_id: str | None = None
    last_activity_at: datetime | None = None
    abandoned_at: datetime | None = Field(default=None, description="when it was (or will be) abandoned")
    order_id: str | None = None
    ordered_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class CartRow(CartView):
    display_name: str | None = None


class CartPage(BaseModel):
    items: list[CartRow]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last page")


class CartSearchQuery(StrictModel):
    """Customers by cart state: has an open cart, its value, its last activity."""

    state: CartState = "open"
    min_value: Amount | None = None
    max_value: Amount | None = None
    active_from: Instant | None = Field(default=None, description="last cart activity at or after (ISO 8601); "
                                                                  "default: 400 days back")
    active_to: Instant | None = Field(default=None, description="last cart activity before (ISO 8601)")
    linked: bool | None = Field(default=None, description="true: carts of known customers only")
    limit: Limit = 50
    after: Annotated[str, Field(max_length=300)] | None = None

    @field_validator("after")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)  # ValueError -> 422 naming `after`
        return value


class DryRunQuery(StrictModel):
    at: Instant | None = Field(default=None, description="the moment to evaluate (ISO 8601 with offset); default now")


class CartReport(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    abandoned: int
    abandoned_linked: int = Field(description="abandoned carts with a known customer (those we could remind)")
    reminded: int
    held: int = Field(description="holdout: would have been reminded")
    failed: int
    skipped: dict[str, int]
    deferred: dict[str, int]
    clicks: int
    recovered: int
    recovery_rate: float
    recovered_revenue: int
    treated: GroupFigures
    holdout: GroupFigures | None
    lift: Lift | None


_CART_TOKEN: TypeAdapter[str] = TypeAdapter(CartToken)


def _token(call: Call[Any, Any]) -> str:
    try:
        return _CART_TOKEN.validate_python(call.path("cart_token"))
    except ValidationError:
        raise ApiError(422, "validation_error", "cart_token: must be 1-200 characters without spaces",
                       "cart_token") from None


def cart_view(doc: dict[str, Any]) -> CartView:
    return CartView.model_validate(doc)


@routes.route("PUT", SHOP_PATH + "/carts/{cart_token}", summary="Record a cart from the shop platform (the whole "
              "item list; items: [] empties it)", body=CartBody, response=CartView, tag="carts",
              extra_statuses={201: "A cart token seen for the first time", 409: "changed concurrently; retry"})
async def put_cart_route(call: Call[CartBody, None]) -> Reply:
    token = _token(call)
    body = call.body.model_dump(exclude_none=True)
    body["items"] = [item.model_dump(exclude_none=True) for item in call.body.items]
    if call.body.updated_at is not None:
        body["updated_at"] = to_millis(call.body.updated_at)  # as stored, so a retry compares equal
    try:
        changed = await put_cart(call.db, call.current_shop.shop_id, token, body, call.now())
    except CartContention:
        raise ApiError(409, "conflict", "cart_token: the cart is being changed concurrently; retry",
                       "cart_token") from None
    assert changed.cart is not None  # a platform's write always leaves a cart (an ended one answers as it is)
    return Reply(201 if changed.outcome == "created" else 200, cart_view(changed.cart))


@routes.route("GET", SHOP_PATH + "/carts/{cart_token}", summary="Read a cart", response=CartView, tag="carts")
async def get_cart(call: Call[None, None]) -> CartView:
    doc = await CartRepository(call.db).get(call.current_shop.shop_id, _token(call))
    if doc is None:
        raise ApiError(404, "not_found", "no such cart", "cart_token")
    return cart_view(doc)


@routes.route("GET", SHOP_PATH + "/carts", summary="Customer search by cart state (open carts by value and last "
              "activity, newest first)", query=CartSearchQuery, response=CartPage, tag="carts")
async def list_carts(call: Call[None, CartSearchQuery]) -> CartPage:
    q = call.query
    if q.min_value is not None and q.max_value is not None and q.min_value > q.max_value:
        raise ApiError(422, "validation_error", "max_value: must not be below min_value", "max_value")
    search = CartSearch(state=q.state, min_value=q.min_value, max_value=q.max_value,
                        active_from=q.active_from.astimezone(UTC) if q.active_from else None,
                        active_to=q.active_to.astimezone(UTC) if q.active_to else None, linked=q.linked)
    rows = await search_carts(call.db, call.current_shop.shop_id, search,
                              decode_cursor(q.after) if q.after else None, q.limit, call.now())
    last = rows[-1] if len(rows) == q.limit else None
    return CartPage(items=[CartRow.model_validate(row) for row in rows],
                    next_after=encode_cursor(last["last_activity_at"], last["_id"]) if last else None)


@routes.route("GET", SHOP_PATH + "/carts/{cart_token}/dry-run",
              summary="What the cart reminder would do for one cart at a moment, when, and why (nothing is sent)",
              query=DryRunQuery, tag="carts", extra_statuses={404: "unknown cart"})
async def dry_run(call: Call[None, DryRunQuery]) -> dict[str, Any]:
    at = call.query.at.astimezone(UTC) if call.query.at else call.now()
    result = await cart_dry_run(call.db, call.app[SETTINGS].public_base, call.current_shop.shop_id, _token(call), at)
    if result is None:
        raise ApiError(404, "not_found", "no such cart", "cart_token")
    return result


@routes.route("GET", SHOP_PATH + "/reports/cart", summary="Cart report: abandoned, reminded, recovered, revenue, "
              "holdout and lift", query=ReportQuery, response=CartReport, tag="reports")
async def report(call: Call[None, ReportQuery]) -> dict[str, Any]:
    start, end = report_period(call)
    return await cart_report(call.db, call.current_shop.shop_id, start, end, call.now())
