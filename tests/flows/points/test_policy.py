"""Every notice is switchable and goes through the delivery policy: never to a blocked or opted-out customer;
"配信停止" stops the notices and "配信再開" resumes them; reports per notice type."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import START
from tests.flows.points.conftest import World

U1 = "U" + "d4" * 16
U2 = "U" + "e5" * 16
MINUTE = timedelta(minutes=1)


async def test_opt_out_stops_the_notices_and_opt_in_resumes_them(world: World) -> None:
    await world.settings()
    await world.follow(U1, U2)
    await world.earn(U1, "o-1", 100, at=START)
    await world.run(START + MINUTE)
    assert await world.notices(U1) == [(U1, "100ptを獲得しました(現在 100pt)")]

    await world.say(U1, "配信停止")
    await world.earn(U1, "o-2", 40, at=START + 2 * MINUTE)
    await world.earn(U1, "o-3", 60, expires_at=START + 3 * timedelta(days=1))  # its reminder is due at once
    await world.run(START + 3 * MINUTE)
    assert len(await world.notices(U1)) == 1

    await world.say(U1, "配信再開")
    await world.earn(U1, "o-4", 25, at=START + 4 * MINUTE)
    await world.run(START + 5 * MINUTE)
    # Only what was earned after the resume: the notices skipped while opted out are not sent later.
    assert [alt for _, alt in await world.notices(U1)] == ["100ptを獲得しました(現在 100pt)",
                                                           "25ptを獲得しました(現在 225pt)"]

    await world.play({"type": "unfollow", "user_id": U2})
    await world.earn(U2, "b-1", 70, at=START + 6 * MINUTE)
    await world.run(START + 7 * MINUTE)
    assert await world.notices(U2) == []

    report = await world.report()
    assert report["earned"]["totals"]["sent"] == 2
    assert report["earned"]["totals"]["skipped"] == {"opted_out": 1, "blocked": 1}
    assert report["expiry"]["totals"]["skipped"] == {"opted_out": 1}
    assert report["monthly"]["totals"]["targeted"] == 0


async def test_each_notice_can_be_switched_off(world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False, monthly_notice=False)
    await world.follow(U1)
    await world.earn(U1, "o-1", 100, expires_at=START + timedelta(days=3), at=START)
    for minutes in (1, 60 * 24, 60 * 24 * 3):
        await world.run(START + minutes * MINUTE)
    assert await world.pushes() == [] and await world.records() == []
    assert await world.balance(U1) == 0  # the expiry itself is not a notice: it happens all the same

    # Switched on again: only what is earned from now on is announced.
    await world.settings(earned_notice=True)
    await world.earn(U1, "o-2", 30, at=START + timedelta(days=4))
    await world.run(START + timedelta(days=4, minutes=1))
    assert await world.notices() == [(U1, "30ptを獲得しました(現在 30pt)")]


async def test_the_notices_use_the_shops_colour_and_text(world: World) -> None:
    await world.settings(color="#AA3377", button_text="ポイントを使う")
    await world.follow(U1)
    await world.earn(U1, "o-1", 100, at=START)
    await world.run(START + MINUTE)
    (push,) = await world.pushes(U1)
    bubble = push["messages"][0]["contents"]
    assert bubble["header"]["backgroundColor"] == "#AA3377"
    assert bubble["footer"]["contents"][0]["action"]["label"] == "ポイントを使う"
    assert bubble["footer"]["contents"][0]["color"] == "#AA3377"
