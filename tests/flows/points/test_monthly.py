"""Monthly balance notice: exactly on its day and hour in Tokyo time, once a month, balance above 0 only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.flows.points.conftest import World, texts

JST = timedelta(hours=9)
U_SOON, U_LATER, U_EMPTY, U_BLOCKED, U_OPTED_OUT = (f"U{i:032x}" for i in range(1, 6))


def tokyo(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A wall-clock time in Tokyo, as UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC) - JST


async def test_monthly_notice_goes_on_its_day_and_hour_in_tokyo_time_across_months(world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False, monthly_notice=True, monthly_day=1,
                         monthly_hour=10)
    users = [U_SOON, U_LATER, U_EMPTY, U_BLOCKED, U_OPTED_OUT]
    await world.follow(*users)
    world.clock.set(tokyo(2037, 12, 5, 12, 0))
    await world.earn(U_SOON, "s-1", 200, expires_at=tokyo(2038, 1, 20, 23, 59))  # within 30 days of Jan 1
    await world.earn(U_SOON, "s-2", 300, expires_at=tokyo(2038, 12, 31, 23, 59))
    await world.earn(U_LATER, "l-1", 300, expires_at=tokyo(2038, 6, 30, 23, 59))
    await world.earn(U_EMPTY, "e-1", 100)
    await world.post(U_EMPTY, "e-2", "use", 100)
    for user in (U_BLOCKED, U_OPTED_OUT):
        await world.earn(user, f"{user}-1", 400)
    await world.play({"type": "unfollow", "user_id": U_BLOCKED})
    await world.say(U_OPTED_OUT, "配信停止")

    # Just before 10:00 on January 1st in Tokyo (already January 1st in UTC at 00:00): nothing.
    summary = await world.run(tokyo(2038, 1, 1, 9, 59))
    assert summary["points_monthly"] == {} and await world.pushes() == []
    summary = await world.run(tokyo(2038, 1, 1, 10, 0))
    assert summary["points_monthly"] == {"shops": 1, "marked": 4}  # every balance above 0
    assert sorted(await world.notices()) == sorted([(U_SOON, "現在のポイント: 500pt"),
                                                    (U_LATER, "現在のポイント: 300pt")])
    soon = texts((await world.pushes(U_SOON))[0]["messages"][0])
    assert "期限が近いポイント" in soon and "200pt" in soon and "2038年1月20日(水) 23:59" in soon
    assert "期限が近いポイント" not in texts((await world.pushes(U_LATER))[0]["messages"][0])
    report = (await world.report(**{"from": "2038-01-01", "to": "2038-01-01"}))["monthly"]
    assert report["totals"]["sent"] == 2 and report["totals"]["skipped"] == {"blocked": 1, "opted_out": 1}

    # Once a month, however often the worker ticks.
    for minutes in (1, 60, 60 * 24):
        await world.run(tokyo(2038, 1, 1, 10, 0) + timedelta(minutes=minutes))
    assert len(await world.pushes()) == 2

    # February: the January lot has expired meanwhile; the new balance goes out on February 1st at 10:00.
    await world.run(tokyo(2038, 2, 1, 9, 0))
    assert len(await world.pushes()) == 2 and await world.balance(U_SOON) == 300
    await world.run(tokyo(2038, 2, 1, 10, 0))
    assert sorted((await world.notices())[2:]) == sorted([(U_SOON, "現在のポイント: 300pt"),
                                                          (U_LATER, "現在のポイント: 300pt")])


async def test_a_late_worker_catches_up_but_a_notice_switched_on_late_waits_for_next_month(world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False, monthly_notice=True, monthly_day=1,
                         monthly_hour=10)
    await world.follow(U_LATER)
    await world.earn(U_LATER, "l-1", 300, at=tokyo(2037, 12, 5, 12, 0))
    # The worker was down on the 1st; it catches up on the 2nd (in the shop's waking hours).
    await world.run(tokyo(2038, 1, 2, 11, 0))
    assert await world.notices() == [(U_LATER, "現在のポイント: 300pt")]
    # Four days late is too late: nothing for that month.
    await world.run(tokyo(2038, 2, 5, 11, 0))
    assert len(await world.pushes()) == 1
    await world.run(tokyo(2038, 3, 1, 10, 0))
    assert len(await world.pushes()) == 2


async def test_the_month_is_the_shops_when_utc_is_still_in_the_previous_month(world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False, monthly_notice=True, monthly_day=1,
                         monthly_hour=8)
    await world.follow(U_LATER)
    await world.earn(U_LATER, "l-1", 300, at=tokyo(2037, 12, 5, 12, 0))
    await world.run(tokyo(2037, 12, 31, 23, 0))  # 14:00 on December 31st in UTC
    await world.run(tokyo(2038, 1, 1, 7, 59))  # 22:59 on December 31st in UTC
    assert await world.pushes() == []
    summary = await world.run(tokyo(2038, 1, 1, 8, 0))  # 23:00 on December 31st in UTC: January in Tokyo
    assert summary["points_monthly"] == {"shops": 1, "marked": 1}
    assert await world.notices() == [(U_LATER, "現在のポイント: 300pt")]
    assert [doc["_id"] async for doc in world.db["job_runs"].find({})] == [f"points_monthly:{world.shop.shop_id}:2038-01"]
