"""Every flow's report from one place: per step, per day, plus treated vs holdout and the lift.

Read from the delivery log (records by decision time), clicks (by click time)
and conversions (by order time) — the same three collections for every flow,
so a flow only says which steps it has. Every fact lands in one cell per
(step, shop-local day); the per-step rows, the per-day series (the dashboard's
charts) and the totals are sums of the same cells, so they always agree.
The lift compares customers, not messages: treated = customers sent a message
of the flow in the period, holdout = customers held back; each group's
conversion rate counts customers with at least one conversion attributed to
such a record (`delivery.stats`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from delivery.stats import Lift, lift
from storage.database import Database
from storage.delivery_log import DeliveryLog
from storage.shops import ShopRepository

MAX_WINDOW = timedelta(days=90)  # the longest attribution window a shop can set


@dataclass
class StepReport:
    step: int | None
    targeted: int = 0  # records: sent + skipped + failed + held
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    held: int = 0  # holdout: would have been sent
    deferred: dict[str, int] = field(default_factory=dict)  # postponed (quiet hours, window, cap), by reason
    clicks: int = 0
    conversions: int = 0  # orders attributed to a sent message of this step
    revenue: int = 0


@dataclass
class DayReport:
    """One shop-local day of a flow: the same counters as a step row, summed over the steps."""

    day: date
    targeted: int = 0
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    held: int = 0
    deferred: dict[str, int] = field(default_factory=dict)
    clicks: int = 0
    conversions: int = 0
    revenue: int = 0


Row = StepReport | DayReport


@dataclass
class GroupFigures:
    customers: int = 0
    conversions: int = 0  # customers with at least one attributed order
    orders: int = 0
    revenue: int = 0

    @property
    def revenue_per_customer(self) -> float:
        return self.revenue / self.customers if self.customers else 0.0


@dataclass
class FlowReport:
    flow: str
    start: datetime
    end: datetime
    steps: list[StepReport]
    days: list[DayReport]  # every day of the period in the shop's time zone, oldest first (zeros included)
    totals: StepReport
    treated: GroupFigures
    holdout: GroupFigures | None  # None when nobody of this flow was held out in the period
    lift: Lift | None

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["from"] = body.pop("start")
        body["to"] = body.pop("end")
        for group in ("treated", "holdout"):
            figures = getattr(self, group)
            if figures is not None:
                body[group]["revenue_per_customer"] = round(figures.revenue_per_customer, 2)
        return body


def _add(row: Row, item: dict[str, Any]) -> None:
    status = item.get("status")
    if status == "deferred":
        reason = str(item.get("reason") or "unknown")
        row.deferred[reason] = row.deferred.get(reason, 0) + 1
        return
    row.targeted += 1
    if status == "sent":
        row.sent += 1
    elif status == "failed":
        row.failed += 1
    elif status == "held":
        row.held += 1
    elif status == "skipped":
        reason = str(item.get("reason") or "unknown")
        row.skipped[reason] = row.skipped.get(reason, 0) + 1


def _merge(total: Row, rows: Iterable[Row]) -> None:
    for row in rows:
        total.targeted += row.targeted
        total.sent += row.sent
        total.failed += row.failed
        total.held += row.held
        total.clicks += row.clicks
        total.conversions += row.conversions
        total.revenue += row.revenue
        for mine, theirs in ((total.skipped, row.skipped), (total.deferred, row.deferred)):
            for reason, n in theirs.items():
                mine[reason] = mine.get(reason, 0) + n


def _total(rows: Iterable[StepReport]) -> StepReport:
    total = StepReport(step=None)
    _merge(total, rows)
    return total


def period_days(start: datetime, end: datetime, zone: ZoneInfo) -> list[date]:
    """The shop-local calendar days that [start, end) touches, oldest first."""
    first = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


Cell = tuple[int | None, date]


async def flow_report(database: Database, shop_id: str, flow: str, start: datetime, end: datetime,
                      steps: Iterable[int] = (), *, timezone: str | None = None,
                      key: str | None = None) -> FlowReport:
    """The flow's figures over [start, end); `steps` are listed even when nothing happened on them.

    Days are the shop's calendar days (`timezone`, read from the shop when not given). `key`: only one
    delivery key's records, clicks and conversions (a broadcast: one key for all its recipients).
    """
    if timezone is None:
        shop = await ShopRepository(database).get(shop_id)
        timezone = shop.timezone if shop is not None else "UTC"
    zone = ZoneInfo(timezone)
    records = DeliveryLog(database)
    cells: dict[Cell, StepReport] = {}

    def cell(step: int | None, at: datetime) -> StepReport:
        key = (step, at.astimezone(zone).date())
        found = cells.get(key)
        if found is None:
            found = cells[key] = StepReport(step)
        return found

    cohorts: dict[str, set[str]] = {"treated": set(), "holdout": set()}
    async for batch in records.batches(shop_id, flow, start, end):
        for item in batch.get("items") or []:
            if key is not None and item.get("key") != key:
                continue
            _add(cell(item.get("step"), batch["at"]), item)
            if item.get("status") == "sent":
                cohorts["treated"].add(item["user"])
            elif item.get("status") == "held":
                cohorts["holdout"].add(item["user"])
    clicked = await (records.clicks_by_step_and_day(shop_id, flow, start, end, timezone) if key is None
                     else records.key_clicks_by_step_and_day(key, start, end, timezone))
    for (step, day), clicks in clicked.items():
        cells.setdefault((step, date.fromisoformat(day)), StepReport(step)).clicks += clicks
    groups = {name: GroupFigures(customers=len(users)) for name, users in cohorts.items()}
    converted: dict[str, set[str]] = {"treated": set(), "holdout": set()}
    orders: Counter[str] = Counter()
    async for conversion in records.conversions(shop_id, flow, start, end + MAX_WINDOW):
        if key is not None and conversion.get("key") != key:
            continue
        group = str(conversion.get("group") or "treated")
        ordered_in_period = conversion["ordered_at"] < end
        if group == "treated" and ordered_in_period:
            row = cell(conversion.get("step"), conversion["ordered_at"])
            row.conversions += 1
            row.revenue += int(conversion.get("revenue") or 0)
        # The cohort's conversions: orders that follow a record of this period.
        delivered = conversion.get("delivery_at")
        if group in groups and delivered is not None and start <= delivered < end \
                and conversion["line_user_id"] in cohorts[group]:
            converted[group].add(conversion["line_user_id"])
            orders[group] += 1
            groups[group].revenue += int(conversion.get("revenue") or 0)
    for name, figures in groups.items():
        figures.conversions = len(converted[name])
        figures.orders = orders[name]
    rows: dict[int | None, StepReport] = {step: StepReport(step) for step in steps}
    days = {day: DayReport(day) for day in period_days(start, end, zone)}
    for (step, on), counted in cells.items():
        _merge(rows.setdefault(step, StepReport(step)), [counted])
        _merge(days.setdefault(on, DayReport(on)), [counted])
    ordered = [rows[step] for step in sorted(rows, key=lambda s: (s is None, s or 0))]
    holdout = groups["holdout"] if groups["holdout"].customers else None
    measured = lift(groups["treated"].conversions, groups["treated"].customers,
                    holdout.conversions, holdout.customers) if holdout else None
    return FlowReport(flow, start, end, ordered, [days[on] for on in sorted(days)], _total(ordered),
                      groups["treated"], holdout, measured)
