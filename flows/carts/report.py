"""The cart report: carts abandoned in a period (from the carts), and what the reminders did (the shared report).

`abandoned` counts carts whose abandonment moment (last activity + the delay)
falls in the period and has passed — every cart, linked to a customer or not
(`abandoned_linked`: those we could remind); a cart counts once, at its
latest abandonment. Reminded, skipped, clicks, recovered and revenue come from
`delivery.report.flow_report` like every flow's, with treated vs holdout and
the lift when a holdout is set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from delivery.report import flow_report
from flows.carts.journey import FLOW
from flows.carts.plan import STEP
from storage.carts import CartRepository
from storage.database import Database


async def cart_report(database: Database, shop_id: str, start: datetime, end: datetime,
                      now: datetime) -> dict[str, Any]:
    report = await flow_report(database, shop_id, FLOW, start, end, [STEP])
    abandoned, linked = await CartRepository(database).count_abandoned(shop_id, start, min(end, now))
    totals = report.totals
    full = report.as_dict()
    return {
        "from": start, "to": end,
        "abandoned": abandoned, "abandoned_linked": linked,
        "reminded": totals.sent, "held": totals.held, "failed": totals.failed,
        "skipped": totals.skipped, "deferred": totals.deferred, "clicks": totals.clicks,
        "recovered": totals.conversions,
        "recovery_rate": round(totals.conversions / totals.sent, 4) if totals.sent else 0.0,
        "recovered_revenue": totals.revenue,
        "treated": full["treated"], "holdout": full["holdout"], "lift": full["lift"],
    }
