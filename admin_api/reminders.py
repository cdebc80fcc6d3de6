"""Admin routes of browse reminders: the per-step report and the dry run (thin: parse → domain → reply)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, Field

from admin_api.models import Identifier, StrictModel
from admin_api.registry import SHOP_PATH, AdminApi, Call
from bot.typedefs import SETTINGS
from core.errors import ApiError
from flows.reminders.preview import dry_run
from storage.deliveries import DeliveryRepository, StepReport
from storage.reminders import ReminderPauses
from storage.shop_settings import ReminderSettings, ShopSettingsRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`

MAX_PERIOD = timedelta(days=366)


def _moment(value: object) -> object:
    """An ISO date (a whole day in shop time) or an ISO date-time with an offset."""
    if not isinstance(value, str):
        return value
    if len(value) == 10:
        return date.fromisoformat(value)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a date-time needs a time zone offset, e.g. 2026-12-01T00:00:00+09:00")
    return moment


Moment = Annotated[date | datetime, BeforeValidator(_moment)]


class ReportQuery(StrictModel):
    from_: Moment | None = Field(default=None, alias="from",
                                 description="start: ISO date (shop time) or date-time; default 30 days ago")
    to: Moment | None = Field(default=None, description="end: inclusive for a date; default now")


class ReminderReport(BaseModel):
    campaign: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    steps: list[StepReport]
    paused_until: datetime | None


class DryRunQuery(StrictModel):
    line_user_id: Identifier
    at: Annotated[datetime, BeforeValidator(_moment)] | None = Field(
        default=None, description="the moment to evaluate (ISO 8601 with offset); default now")


def _bound(value: datetime | date | None, zone: ZoneInfo, *, end: bool, default: datetime) -> datetime:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@routes.route("GET", SHOP_PATH + "/reports/reminders", summary="Browse-reminder report per step over a period",
           query=ReportQuery, response=ReminderReport, tag="reports")
async def reminder_report(call: Call[None, ReportQuery]) -> dict[str, Any]:
    shop = call.current_shop
    now = call.now()
    zone = ZoneInfo(shop.timezone)
    start = _bound(call.query.from_, zone, end=False, default=now - timedelta(days=30))
    end = _bound(call.query.to, zone, end=True, default=now + timedelta(seconds=1))
    if end <= start:
        raise ApiError(422, "validation_error", "to: must be after from", "to")
    if end - start > MAX_PERIOD:
        raise ApiError(422, "validation_error", "to: a period is at most 366 days", "to")
    rows = {r.step: r for r in await DeliveryRepository(call.db).report(shop.shop_id, "reminders", start, end)}
    settings = await ShopSettingsRepository(call.db).get(shop.shop_id, ReminderSettings)
    steps = sorted(set(range(1, len(settings.steps) + 1)) | set(rows))
    empty = {"targeted": 0, "sent": 0, "skipped": {}, "failed": 0, "clicks": 0, "conversions": 0, "revenue": 0}
    paused = await ReminderPauses(call.db).paused_until(shop.shop_id, now)
    return {
        "campaign": "reminders", "from": start, "to": end,
        "steps": [rows[s].__dict__ if s in rows else {"step": s, **empty} for s in steps],
        "paused_until": paused,
    }


@routes.route("GET", SHOP_PATH + "/reminders/dry-run",
           summary="What the reminder engine would do for one customer at a moment (nothing is sent or claimed)",
           query=DryRunQuery, tag="reminders", extra_statuses={404: "unknown customer"})
async def reminder_dry_run(call: Call[None, DryRunQuery]) -> dict[str, Any]:
    at = call.query.at.astimezone(UTC) if call.query.at else call.now()
    result = await dry_run(call.db, call.app[SETTINGS].public_base, call.current_shop.shop_id,
                           call.query.line_user_id, at)
    if result is None:
        raise ApiError(404, "not_found", "no such customer", "line_user_id")
    return result
