"""The overview: audience counts, this month's LINE quota, and every flow's figures for the chosen period."""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.typedefs import DATABASE
from core.errors import ApiError
from dashboard.pages import Page, signed_in
from flows.catalog import reported_flows


@signed_in
async def overview(page: Page) -> web.StreamResponse:
    query = page.period_query()
    sections = await reported_flows(page.request.app[DATABASE], page.shop_id)
    counts, reports = await asyncio.gather(
        page.gateway.get("/reports/links"),
        asyncio.gather(*(page.gateway.get("/reports/flows/{flow}", query=query, flow=flow.name)
                         for flow in sections)),
    )
    quota: dict[str, Any] | None
    try:
        quota = await page.gateway.get("/reports/quota")
    except ApiError:
        quota = None  # LINE did not answer: the page says "unknown" rather than failing
    flows = [{"flow": flow, "report": report} for flow, report in zip(sections, reports, strict=True)]
    return page.render("overview.html", counts=counts, quota=quota, flows=flows,
                       period=page.period_fields(reports[0]), month=page.now().astimezone(ZoneInfo(page.timezone)))
