"""Admin routes for the points ledger (post a transaction idempotently, read balance and history) and the
points notices' report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from admin_api.models import Identifier, ReportQuery, StrictModel, TimeCursorQuery, path_id, report_period, to_millis
from admin_api.registry import SHOP_PATH, AdminApi, Call, Reply
from admin_api.reminders import FlowReportView
from core.clock import as_utc
from core.errors import ApiError
from delivery.report import flow_report
from flows.points.plan import EARNED, EXPIRY, MONTHLY, STEP
from storage.customers import CustomerRepository
from storage.paging import encode_cursor
from storage.points import InsufficientPoints, PointsRepository, TransactionConflict

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`

Amount = Annotated[int, Field(strict=True, ge=-100_000_000, le=100_000_000)]


class PointsTransaction(StrictModel):
    """earn/use/expire take a positive amount; adjust a signed one. `expires_at` only for earns."""

    transaction_id: Identifier
    line_user_id: Identifier | None = None
    customer_id: Identifier | None = Field(default=None, description="the shop's customer ID, instead of line_user_id")
    type: Literal["earn", "use", "expire", "adjust"]
    amount: Amount
    expires_at: AwareDatetime | None = None
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None
    occurred_at: AwareDatetime | None = Field(default=None, description="default: when received")



class LedgerEntry(BaseModel):
    transaction_id: str
    line_user_id: str
    type: str
    amount: int
    delta: int = Field(description="signed effect on the balance")
    expires_at: datetime | None = None
    reason: str | None = None
    occurred_at: datetime
    created_at: datetime


class Posted(BaseModel):
    transaction: LedgerEntry
    balance: int


class PointsView(BaseModel):
    line_user_id: str
    balance: int
    soonest_expiring_amount: int | None
    soonest_expiry_at: datetime | None


class HistoryQuery(TimeCursorQuery):
    """A customer's ledger, newest first."""


class HistoryPage(BaseModel):
    items: list[LedgerEntry]
    next_after: str | None


def check_transaction(body: PointsTransaction) -> None:
    """Cross-field rules, each answered with the field to fix."""
    if (body.line_user_id is None) == (body.customer_id is None):
        raise _invalid("line_user_id", "give exactly one of line_user_id and customer_id")
    if body.type == "adjust" and body.amount == 0:
        raise _invalid("amount", "an adjustment must not be 0")
    if body.type != "adjust" and body.amount <= 0:
        raise _invalid("amount", "must be positive for earn, use and expire")
    if body.expires_at is not None and body.type != "earn":
        raise _invalid("expires_at", "only an earn has an expiry date")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", field)


@routes.route("POST", SHOP_PATH + "/points/transactions", summary="Post a points transaction (idempotent by transaction_id)",
           body=PointsTransaction, response=Posted, status=201, tag="points",
           extra_statuses={200: "Already recorded (same transaction)", 409: "Insufficient balance or transaction ID reused"})
async def post_transaction(call: Call[PointsTransaction, None]) -> Reply:
    body = call.body
    check_transaction(body)
    shop_id = call.current_shop.shop_id
    line_user_id = body.line_user_id
    if line_user_id is None:
        customer = await CustomerRepository(call.db).by_shop_customer_id(shop_id, str(body.customer_id))
        if customer is None:
            raise ApiError(422, "unknown_customer", "customer_id: no customer has this shop customer ID", "customer_id")
        line_user_id = customer["line_user_id"]
    transaction: dict[str, Any] = {
        "transaction_id": body.transaction_id,
        "line_user_id": line_user_id,
        "type": body.type,
        "amount": body.amount,
        "expires_at": to_millis(body.expires_at) if body.expires_at else None,
        "reason": body.reason,
        "occurred_at": to_millis(body.occurred_at) if body.occurred_at else None,
    }
    try:
        posted = await PointsRepository(call.db).post(shop_id, transaction, call.now())
    except InsufficientPoints:
        raise ApiError(409, "insufficient_points", "amount: larger than the customer's balance", "amount") from None
    except TransactionConflict:
        raise ApiError(409, "conflict", "transaction_id: already used for a different transaction",
                       "transaction_id") from None
    view = Posted(transaction=LedgerEntry.model_validate(posted.entry), balance=posted.balance)
    return Reply(201 if posted.outcome == "created" else 200, view)


@routes.route("GET", SHOP_PATH + "/customers/{line_user_id}/points", summary="Balance and soonest expiry",
           response=PointsView, tag="points")
async def get_points(call: Call[None, None]) -> PointsView:
    line_user_id = path_id(call, "line_user_id")
    summary = await PointsRepository(call.db).summary(call.current_shop.shop_id, line_user_id, call.now())
    return PointsView(line_user_id=line_user_id, **summary.__dict__)


@routes.route("GET", SHOP_PATH + "/customers/{line_user_id}/points/history", summary="Ledger entries, newest first",
           query=HistoryQuery, response=HistoryPage, tag="points")
async def get_points_history(call: Call[None, HistoryQuery]) -> HistoryPage:
    line_user_id = path_id(call, "line_user_id")
    q = call.query
    docs = await PointsRepository(call.db).history(call.current_shop.shop_id, line_user_id, after=q.after, limit=q.limit)
    last = docs[-1] if len(docs) == q.limit else None
    return HistoryPage(
        items=[LedgerEntry.model_validate(doc) for doc in docs],
        next_after=encode_cursor(as_utc(last["occurred_at"]), last["_id"]) if last else None,
    )


class PointsReport(BaseModel):
    """Each notice's report (`delivery.report`): sent, skipped by reason, clicks, conversions, holdout and lift."""

    earned: FlowReportView
    monthly: FlowReportView
    expiry: FlowReportView


@routes.route("GET", SHOP_PATH + "/reports/points", summary="Points notices report per notice type over a period",
           query=ReportQuery, response=PointsReport, tag="reports")
async def points_report(call: Call[None, ReportQuery]) -> dict[str, Any]:
    shop_id = call.current_shop.shop_id
    start, end = report_period(call)
    return {name: (await flow_report(call.db, shop_id, flow, start, end, [STEP])).as_dict()
            for name, flow in (("earned", EARNED), ("monthly", MONTHLY), ("expiry", EXPIRY))}
