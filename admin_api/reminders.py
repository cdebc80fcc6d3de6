"""Admin routes of browse reminders: the per-step report and the dry run (thin: parse → domain → reply)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from admin_api.models import Identifier, Instant, ReportQuery, StrictModel, report_period
from admin_api.registry import SHOP_PATH, AdminApi, Call
from bot.typedefs import SETTINGS
from core.errors import ApiError
from delivery.report import DayReport, GroupFigures, StepReport, flow_report
from delivery.stats import Lift
from flows.reminders.plan import CAMPAIGN
from flows.reminders.preview import dry_run
from storage.pauses import ShopPauses
from storage.shop_settings import ReminderSettings, ShopSettingsRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`

class FlowReportView(BaseModel):
    """Any flow's report (`delivery.report`): per step, totals, treated vs holdout and the lift."""

    flow: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    steps: list[StepReport]
    days: list[DayReport] = Field(description="every day of the period in the shop's time zone (the same records)")
    totals: StepReport
    treated: GroupFigures
    holdout: GroupFigures | None
    lift: Lift | None


class ReminderReport(FlowReportView):
    campaign: str
    paused_until: datetime | None


class DryRunQuery(StrictModel):
    line_user_id: Identifier
    at: Instant | None = Field(default=None, description="the moment to evaluate (ISO 8601 with offset); default now")


@routes.route("GET", SHOP_PATH + "/reports/reminders", summary="Browse-reminder report per step over a period",
           query=ReportQuery, response=ReminderReport, tag="reports")
async def reminder_report(call: Call[None, ReportQuery]) -> dict[str, Any]:
    shop = call.current_shop
    start, end = report_period(call)
    settings = await ShopSettingsRepository(call.db).get(shop.shop_id, ReminderSettings)
    report = await flow_report(call.db, shop.shop_id, CAMPAIGN, start, end, range(1, len(settings.steps) + 1),
                               timezone=shop.timezone)
    return {**report.as_dict(), "campaign": CAMPAIGN,
            "paused_until": await ShopPauses(call.db).paused_until(shop.shop_id, call.now())}


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
