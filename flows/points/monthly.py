"""The monthly balance notice's schedule: every customer with points becomes due at the shop's monthly moment.

The moment is `monthly_day` at `monthly_hour` in the shop's time zone (pure:
`monthly_moment`). The worker's `points_monthly` job, at each tick, finds the
shops whose moment has passed this month (within `CATCH_UP`, so a worker that
was down still sends, but switching the notice on late in a month does not)
and takes the shop's run for the month (`storage.job_runs`: at most once per
shop and month, however many workers tick; a dead worker's run is taken over
after its lease and done again). The run streams the shop's customers once
(one indexed scan; the balance is filtered here, so expiries written earlier in
the tick count) and marks the contacts of those with a balance above 0 with
the month and the moment as their due time, `ID_CHUNK` contacts per
`update_many` by `_id`, skipping contacts already marked for the month, so a
run done twice changes nothing. The delivery engine then sends each one its
notice if its balance is still above 0 (`decide_monthly`).

Cost on the embedded database: the scan plus one `update_many` per 50 customers
with points, no round trip per customer; measured in `bench/bench_points.py`.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from delivery.context import JobContext, JobSummary
from flows.points.plan import MONTHLY
from storage.contacts import ContactRepository
from storage.database import ID_CHUNK, Database
from storage.job_runs import JobRuns
from storage.keys import compose
from storage.points import PointsRepository
from storage.shop_settings import PointsSettings

CATCH_UP = timedelta(days=3)
LEASE = timedelta(minutes=30)  # longer than a run of a large shop takes; a dead worker's run waits this long


def monthly_moment(now: datetime, timezone: str, day: int, hour: int) -> tuple[str, datetime]:
    """This month's notice moment (UTC) in the shop's calendar, and the month's label ("2038-01")."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    moment = datetime(local.year, local.month, day, hour, tzinfo=zone).astimezone(UTC)
    return f"{local.year:04d}-{local.month:02d}", moment


def run_id(shop_id: str, month: str) -> str:
    return compose(MONTHLY, shop_id, month)


async def mark_month(database: Database, shop_id: str, month: str, moment: datetime,
                     chunk: int = ID_CHUNK) -> int:
    """Make the shop's customers with points due for this month's notice; returns how many contacts changed."""
    contacts = ContactRepository(database)
    fields = {"month": month, "moment": moment, "due_at": moment}
    when = {f"flows.{MONTHLY}.month": {"$ne": month}}
    marked = 0
    async for users in PointsRepository(database).holders(shop_id, chunk):
        marked += await contacts.put_flow_state_many(shop_id, users, MONTHLY, fields, due_at=moment, when=when)
    return marked


async def mark_monthly(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
    """Make every customer with points due for the monthly notice, once per shop and month."""
    database = ctx.database
    query: dict[str, object] = {"section": "points", "data.monthly_notice": True}
    if shop_id is not None:
        query["shop_id"] = shop_id
    enabled = {doc["shop_id"]: PointsSettings.model_validate(doc["data"])
               async for doc in database["shop_settings"].find(query)}
    summary: Counter[str] = Counter()
    if not enabled:
        return dict(summary)
    zones = {doc["_id"]: str(doc.get("timezone") or "Asia/Tokyo")
             async for doc in database.shops.find({"_id": {"$in": sorted(enabled)}}, {"timezone": 1})}
    runs = JobRuns(database)
    for shop, settings in sorted(enabled.items()):
        if shop not in zones:
            continue
        month, moment = monthly_moment(now, zones[shop], settings.monthly_day, settings.monthly_hour)
        if not moment <= now < moment + CATCH_UP:
            continue
        if await runs.take(run_id(shop, month), now, LEASE) is None:
            continue
        summary["shops"] += 1
        summary["marked"] += await mark_month(database, shop, month, moment)
        await runs.finish(run_id(shop, month), now)
    return dict(summary)
