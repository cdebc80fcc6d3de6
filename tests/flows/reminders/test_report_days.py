"""The report per day (delivery.report): every record, click and conversion lands on its shop-local day,
the days add up to the totals and the steps, and every route that reports the flow answers the same."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from delivery.report import flow_report, period_days
from tests.conftest import START
from tests.flows.reminders.conftest import World, bubbles, days

U1 = "U" + "1" * 32
U2 = "U" + "2" * 32
TOKYO = ZoneInfo("Asia/Tokyo")
COUNTERS = ("targeted", "sent", "failed", "held", "clicks", "conversions", "revenue")


@pytest.mark.parametrize(("start", "end", "zone", "expected"), [
    # 2037-12-01 00:00 Tokyo .. 2037-12-03 00:00 Tokyo: two whole days
    (datetime(2037, 11, 30, 15, tzinfo=UTC), datetime(2037, 12, 2, 15, tzinfo=UTC), "Asia/Tokyo",
     [date(2037, 12, 1), date(2037, 12, 2)]),
    # the same instants seen from UTC touch three days
    (datetime(2037, 11, 30, 15, tzinfo=UTC), datetime(2037, 12, 2, 15, tzinfo=UTC), "UTC",
     [date(2037, 11, 30), date(2037, 12, 1), date(2037, 12, 2)]),
    # an hour inside one day
    (datetime(2037, 12, 1, 1, tzinfo=UTC), datetime(2037, 12, 1, 2, tzinfo=UTC), "Asia/Tokyo", [date(2037, 12, 1)]),
])
def test_period_days(start: datetime, end: datetime, zone: str, expected: list[date]) -> None:
    assert period_days(start, end, ZoneInfo(zone)) == expected


def summed(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {name: sum(row[name] for row in rows) for name in COUNTERS}
    for group in ("skipped", "deferred"):
        merged: dict[str, int] = {}
        for row in rows:
            for reason, n in row[group].items():
                merged[reason] = merged.get(reason, 0) + n
        total[group] = merged
    return total


async def test_each_fact_lands_on_its_shop_local_day_and_the_days_add_up(world: World) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1")
    await world.customer(U1)
    await world.customer(U2, opted_out=True)
    # Decided at 00:30 in Tokyo on the 4th (still the 3rd in UTC), three days after the view.
    late = datetime(2037, 12, 3, 15, 30, tzinfo=UTC)
    for user in (U1, U2):
        await world.view(user, "p1", late - days(3))
    assert (await world.run(late))["sent"] == 1
    (push,) = await world.pushes(U1)
    world.clock.set(datetime(2037, 12, 5, 14, 59, tzinfo=UTC))  # 23:59 on the 5th in Tokyo
    url = bubbles(push)[0]["footer"]["contents"][0]["action"]["uri"]
    assert (await world.client.get(urlsplit(url).path, allow_redirects=False)).status == 302
    await world.order(U1, "o-1", [("p1", 12800)], datetime(2037, 12, 5, 15, 1, tzinfo=UTC))  # 00:01 on the 6th

    report = await world.report(**{"from": "2037-12-01", "to": "2037-12-07"})
    by_day = {row["day"]: row for row in report["days"]}
    assert list(by_day) == [f"2037-12-0{n}" for n in range(1, 8)]  # every day, zeros included
    assert by_day["2037-12-04"]["sent"] == 1 and by_day["2037-12-04"]["skipped"] == {"opted_out": 1}
    assert by_day["2037-12-05"]["clicks"] == 1
    assert by_day["2037-12-06"]["conversions"] == 1 and by_day["2037-12-06"]["revenue"] == 12800
    assert summed(report["days"]) == summed(report["steps"]) == {
        name: report["totals"][name] for name in (*COUNTERS, "skipped", "deferred")}

    # The shop's time zone decides the day: the same records seen by a UTC shop fall a day earlier.
    utc = await flow_report(world.db, world.shop.shop_id, "reminders", datetime(2037, 12, 1, tzinfo=UTC),
                            datetime(2037, 12, 8, tzinfo=UTC), timezone="UTC")
    assert [(d.day.isoformat(), d.sent) for d in utc.days if d.sent] == [("2037-12-03", 1)]
    default = await flow_report(world.db, world.shop.shop_id, "reminders", START, START + days(7))
    assert [d.day for d in default.days if d.sent] == [date(2037, 12, 4)]  # read from the shop: Asia/Tokyo

    # Every route that reports the flow answers the same numbers.
    same = await world.client.get(f"/admin/api/v1/shops/{world.shop.shop_id}/reports/flows/reminders",
                                  params={"from": "2037-12-01", "to": "2037-12-07"}, headers=world.shop.auth)
    assert same.status == 200
    assert await same.json() == {key: value for key, value in report.items() if key not in ("campaign", "paused_until")}


async def test_a_period_of_one_hour_reports_one_day(world: World) -> None:
    report = await world.report(**{"from": "2037-12-01T10:00:00+09:00", "to": "2037-12-01T11:00:00+09:00"})
    assert [row["day"] for row in report["days"]] == ["2037-12-01"]
    assert report["days"][0]["sent"] == 0 and report["totals"]["sent"] == 0
