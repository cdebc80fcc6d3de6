"""One flow's page: daily charts of sends, clicks, conversions and revenue; the funnel per step; skips by reason."""

from __future__ import annotations

from datetime import date

from aiohttp import web

from dashboard.charts import daily_chart, funnel
from dashboard.pages import Page, signed_in
from dashboard.render import yen
from flows.catalog import reported_flow

METRICS = (("sent", "送信数"), ("clicks", "クリック数"), ("conversions", "コンバージョン数"), ("revenue", "売上"))
STAGES = (("targeted", "対象"), ("sent", "送信"), ("clicks", "クリック"), ("conversions", "コンバージョン"))


@signed_in
async def flow_page(page: Page) -> web.StreamResponse:
    flow = reported_flow(page.request.match_info["flow"])
    if flow is None:
        return page.error(404, "そのような配信はありません。")
    report = await page.gateway.get("/reports/flows/{flow}", query=page.period_query(), flow=flow.name)
    charts = []
    for metric, title in METRICS:
        series = [(date.fromisoformat(day["day"]), int(day[metric])) for day in report["days"]]
        charts.append(daily_chart(metric, title, series, yen if metric == "revenue" else "{:,}".format))
    steps = [{"row": row, "stages": funnel([(label, int(row[key])) for key, label in STAGES])}
             for row in report["steps"]]
    return page.render("flow.html", flow=flow, report=report, charts=charts, steps=steps,
                       period=page.period_fields(report))
