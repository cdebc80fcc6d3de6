"""The monthly balance notice's schedule: every customer with points becomes due at the shop's monthly moment.

The moment is `monthly_day` at `monthly_hour` in the shop's time zone (pure:
`monthly_moment`). The worker's `points_monthly` job, at each tick, finds the
shops whose moment has passed this month (within `CATCH_UP`, so a worker that
was down still sends, but switching the notice on late in a month does not)
and takes the shop's run for the month (`storage.job_runs`: at most once per
shop and month, however many workers tick; a dead worker's run is taken over
where it stopped). The run marks the shop's contacts that have had points
(`flows.points_monthly.member`, set by the ledger listener) with the month and
the moment as their due time — in `_id` ranges of `CHUNK` contacts, one
indexed scan and one `update_many` each, skipping contacts already marked for
the month, so a chunk done twice changes nothing. The delivery engine then
sends each one its notice if its balance is above 0 (`decide_monthly`).

Cost (embedded database): the contact scan plus ≈ 0.23 ms per marked contact
(`update_many`), no round trip per customer; measured in `bench/bench_points.py`.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from delivery.context import JobContext, JobSummary
from flows.points.plan import MONTHLY
from flows.points.state import MEMBER
from storage.contacts import ContactRepository
from storage.job_runs import JobRuns
from storage.keys import compose
from storage.shop_settings import PointsSettings

CATCH_UP = timedelta(days=3)
LEASE = timedelta(minutes=5)
CHUNK = 500


def monthly_moment(now: datetime, timezone: str, day: int, hour: int) -> tuple[str, datetime]:
    """This month's notice moment (UTC) in the shop's calendar, and the month's label ("2038-01")."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    moment = datetime(local.year, local.month, day, hour, tzinfo=zone).astimezone(UTC)
    return f"{local.year:04d}-{local.month:02d}", moment


def run_id(shop_id: str, month: str) -> str:
    return compose(MONTHLY, shop_id, month)


async def mark_monthly(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
    """Make every customer who has had points due for the monthly notice, once per shop and month."""
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
    runs, contacts = JobRuns(database), ContactRepository(database)
    for shop, settings in sorted(enabled.items()):
        if shop not in zones:
            continue
        month, moment = monthly_moment(now, zones[shop], settings.monthly_day, settings.monthly_hour)
        if not moment <= now < moment + CATCH_UP:
            continue
        run = await runs.take(run_id(shop, month), now, LEASE)
        if run is None:
            continue
        summary["shops"] += 1
        after = run.get("after")
        when = {f"flows.{MONTHLY}.{MEMBER}": True, f"flows.{MONTHLY}.month": {"$ne": month}}
        while True:
            last, marked = await contacts.put_flow_state_range(
                shop, MONTHLY, {"month": month, "moment": moment, "due_at": moment}, due_at=moment, when=when, after=after,
                limit=CHUNK)
            if last is None:
                break
            summary["marked"] += marked
            after = last
            await runs.progress(run_id(shop, month), after, now, LEASE)
        await runs.finish(run_id(shop, month), now)
    return dict(summary)
