"""Admin report routes every flow shares: any listed flow's report by name, and the LINE message quota.

`GET /reports/flows/{flow}` answers for the flows of `flows.catalog` through
`delivery.report.flow_report` — the same function behind each flow's own
report route and behind the dashboard, so their numbers cannot differ.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from admin_api.models import ReportQuery, report_period
from admin_api.registry import SHOP_PATH, AdminApi, Call
from admin_api.reminders import FlowReportView
from bot.typedefs import LINE
from core.errors import ApiError
from core.line_client import LineApiError
from delivery.report import flow_report
from flows.catalog import REPORTED_FLOWS, reported_flow

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`

FLOW_NAMES = ", ".join(flow.name for flow in REPORTED_FLOWS)


class QuotaView(BaseModel):
    limit: int | None = Field(description="this month's message limit; null when LINE sets none")
    used: int = Field(description="messages counted toward the quota this month (per recipient)")
    remaining: int | None


@routes.route("GET", SHOP_PATH + "/reports/flows/{flow}",
              summary=f"Any flow's report over a period: per step, per day, totals, holdout and lift ({FLOW_NAMES})",
              query=ReportQuery, response=FlowReportView, tag="reports", extra_statuses={404: "not a reported flow"})
async def any_flow_report(call: Call[None, ReportQuery]) -> dict[str, Any]:
    flow = reported_flow(call.path("flow"))
    if flow is None:
        raise ApiError(404, "not_found", f"flow: must be one of {FLOW_NAMES}", "flow")
    shop = call.current_shop
    start, end = report_period(call)
    report = await flow_report(call.db, shop.shop_id, flow.name, start, end, await flow.steps(call.db, shop.shop_id),
                               timezone=shop.timezone)
    return report.as_dict()


@routes.route("GET", SHOP_PATH + "/reports/quota", summary="This month's LINE message quota and its use",
              response=QuotaView, tag="reports", extra_statuses={502: "LINE did not answer"})
async def quota_report(call: Call[None, None]) -> QuotaView:
    shop = call.current_shop
    try:
        quota = await call.app[LINE].for_token(shop.line.channel_access_token).quota()
    except LineApiError:
        raise ApiError(502, "line_unavailable", "LINE did not report the quota; try again later") from None
    remaining = max(0, quota.limit - quota.used) if quota.limit is not None else None
    return QuotaView(limit=quota.limit, used=quota.used, remaining=remaining)
