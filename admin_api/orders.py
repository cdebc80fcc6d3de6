"""Admin routes for orders: idempotent ingest by the shop's order ID (201 new, 200 known), read, list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, field_validator

from admin_api.models import Identifier, StrictModel, TimeCursorQuery, Yen, path_id, to_millis
from admin_api.registry import SHOP_PATH, AdminApi, Call, Reply
from core.clock import as_utc
from core.errors import ApiError
from storage.orders import Identity, OrderRepository, Recorded
from storage.paging import encode_cursor

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`

OrderStatus = Literal["paid", "cancelled", "refunded"]
Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
CartToken = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S+$")]


class OrderItem(StrictModel):
    product_id: Identifier
    variant_id: Identifier | None = None
    quantity: Annotated[int, Field(strict=True, ge=1, le=100_000)]
    price: Yen = Field(description="unit price in yen")


class OrderBody(StrictModel):
    """An order; give whichever customer identity the shop knows (LINE user, browser, customer ID, e-mail)."""

    order_id: Identifier
    line_user_id: Identifier | None = None
    browser_id: Identifier | None = None
    customer_id: Identifier | None = Field(default=None, description="the shop's own customer ID")
    email: Email | None = None
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=500)]
    total: Yen
    status: OrderStatus
    ordered_at: AwareDatetime | None = Field(default=None, description="ISO 8601 with offset; default: when received")
    cart_token: CartToken | None = None

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value


class OrderBulk(StrictModel):
    orders: Annotated[list[OrderBody], Field(min_length=1, max_length=500)]

    @field_validator("orders")
    @classmethod
    def _unique(cls, orders: list[OrderBody]) -> list[OrderBody]:
        ids = [order.order_id for order in orders]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate order_id in one request")
        return orders


class OrderView(BaseModel):
    order_id: str
    line_user_id: str | None
    customer_id: str | None
    browser_id: str | None
    email: str | None
    items: list[OrderItem]
    total: int
    status: OrderStatus
    ordered_at: datetime
    cart_token: str | None
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderView]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last page")


class BulkOrderResult(BaseModel):
    created: int
    updated: int
    unchanged: int


class OrderQuery(TimeCursorQuery):
    line_user_id: Identifier | None = None
    status: OrderStatus | None = None


def order_view(doc: dict[str, Any]) -> OrderView:
    return OrderView.model_validate(doc)


def identity(body: OrderBody) -> Identity:
    return Identity(line_user_id=body.line_user_id, browser_id=body.browser_id, customer_id=body.customer_id,
                    email=body.email, cart_token=body.cart_token)


def order_fields(body: OrderBody, line_user_id: str | None) -> dict[str, Any]:
    """The stored material fields of an order (the resolved LINE user, times in milliseconds)."""
    fields = body.model_dump(exclude={"order_id"})
    fields["items"] = [item.model_dump() for item in body.items]
    fields["line_user_id"] = line_user_id
    fields["ordered_at"] = to_millis(body.ordered_at) if body.ordered_at else None
    return fields


async def _record(call: Call[Any, Any], bodies: list[OrderBody]) -> list[Recorded]:
    """Resolve every order's customer in one pass, then store them all as one batch."""
    repository = OrderRepository(call.db)
    shop_id = call.current_shop.shop_id
    users = await repository.resolve_line_users(shop_id, [identity(body) for body in bodies])
    incoming = [(body.order_id, order_fields(body, user)) for body, user in zip(bodies, users)]
    return await repository.record_many(shop_id, incoming, call.now())


@routes.route("POST", SHOP_PATH + "/orders", summary="Record an order (idempotent by order_id; a changed status updates it)",
           body=OrderBody, response=OrderView, status=201, tag="orders",
           extra_statuses={200: "The order ID was already known (unchanged or updated)"})
async def post_order(call: Call[OrderBody, None]) -> Reply:
    (recorded,) = await _record(call, [call.body])
    return Reply(201 if recorded.outcome == "created" else 200, order_view(recorded.order))


@routes.route("POST", SHOP_PATH + "/orders/bulk", summary="Record up to 500 orders (each idempotent by order_id)",
           body=OrderBulk, response=BulkOrderResult, tag="orders")
async def post_orders_bulk(call: Call[OrderBulk, None]) -> BulkOrderResult:
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for recorded in await _record(call, call.body.orders):
        counts[recorded.outcome] += 1
    return BulkOrderResult(**counts)


@routes.route("GET", SHOP_PATH + "/orders/{order_id}", summary="Read an order", response=OrderView, tag="orders")
async def get_order(call: Call[None, None]) -> OrderView:
    doc = await OrderRepository(call.db).get(call.current_shop.shop_id, path_id(call, "order_id"))
    if doc is None:
        raise ApiError(404, "not_found", "no such order", "order_id")
    return order_view(doc)


@routes.route("GET", SHOP_PATH + "/orders", summary="List orders, newest first (paged, filtered by customer or status)",
           query=OrderQuery, response=OrderPage, tag="orders")
async def list_orders(call: Call[None, OrderQuery]) -> OrderPage:
    q = call.query
    docs = await OrderRepository(call.db).page(
        call.current_shop.shop_id, line_user_id=q.line_user_id, status=q.status, after=q.after, limit=q.limit
    )
    last = docs[-1] if len(docs) == q.limit else None
    return OrderPage(
        items=[order_view(doc) for doc in docs],
        next_after=encode_cursor(as_utc(last["ordered_at"]), last["_id"]) if last else None,
    )
