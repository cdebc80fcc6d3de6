"""Expiry: the reminder `expiry_lead_days` before, the `expire` entries at the moment, the lookup around it."""

from __future__ import annotations

from datetime import timedelta

from core.clock import as_utc
from tests.flows.points.conftest import World, texts
from tests.flows.points.test_monthly import tokyo

U1 = "U" + "c3" * 16
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


async def test_the_reminder_goes_seven_days_before_each_expiry_once(world: World) -> None:
    await world.settings(earned_notice=False, quiet_hours={"enabled": True, "start": "21:00", "end": "09:00"})
    await world.follow(U1)
    first, second = tokyo(2038, 1, 20, 12, 0), tokyo(2038, 2, 20, 23, 59)
    world.clock.set(tokyo(2037, 12, 20, 12, 0))
    await world.earn(U1, "o-1", 200, expires_at=first)
    await world.earn(U1, "o-2", 100, expires_at=second)
    await world.run(tokyo(2037, 12, 20, 12, 1))

    await world.run(first - 7 * DAY - MINUTE)
    assert await world.pushes() == []
    await world.run(first - 7 * DAY)
    (push,) = await world.pushes(U1)
    message = push["messages"][0]
    assert message["altText"] == "200ptが2038年1月20日(水)に失効します"
    assert "200ptが2038年1月20日(水) 12:00に失効します。お早めにご利用ください。" in texts(message)
    assert "300pt" in texts(message)  # the balance
    for later in (MINUTE, DAY, 6 * DAY):  # once per lot
        await world.run(first - 7 * DAY + later)
    assert len(await world.pushes()) == 1

    # Some of the lot is used; what is left expires at the moment; the next lot's reminder follows.
    await world.post(U1, "u-1", "use", 50, at=first - DAY)
    await world.run(first)
    (expired,) = await world.ledger(U1, "expire")
    assert (expired["amount"], expired["transaction_id"], as_utc(expired["occurred_at"])) == (150, "expiry/o-1", first)
    assert await world.balance(U1) == 100

    # 23:59 seven days before falls in the quiet hours: the reminder waits for 09:00.
    await world.run(second - 7 * DAY)
    assert len(await world.pushes()) == 1
    await world.run(tokyo(2038, 2, 14, 8, 59))
    assert len(await world.pushes()) == 1
    await world.run(tokyo(2038, 2, 14, 9, 0))
    assert [alt for _, alt in await world.notices(U1)][1] == "100ptが2038年2月20日(土)に失効します"
    report = (await world.report(**{"from": "2038-01-01", "to": "2038-02-28"}))["expiry"]
    assert report["totals"]["sent"] == 2 and report["totals"]["deferred"] == {"quiet_hours": 1}


async def test_expiry_at_the_moment_and_the_lookup_never_shows_expired_points(world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False)
    await world.follow(U1)
    moment = tokyo(2038, 1, 31, 23, 59)
    world.clock.set(tokyo(2038, 1, 10, 12, 0))
    await world.earn(U1, "o-1", 300, expires_at=moment)
    await world.earn(U1, "o-2", 200, expires_at=tokyo(2038, 7, 31, 23, 59))

    world.clock.set(moment - MINUTE)
    before = await world.lookup(U1)
    assert before["altText"] == "現在のポイント: 500pt"
    assert "300pt" in texts(before) and "2038年1月31日(日)" in texts(before)

    # The moment has come, the worker has not run yet: the lookup already leaves the points out.
    world.clock.set(moment)
    at_moment = await world.lookup(U1)
    assert at_moment["altText"] == "現在のポイント: 200pt"
    assert "2038年7月31日(土)" in texts(at_moment) and "2038年1月31日(日)" not in texts(at_moment)
    assert (await world.admin("GET", f"/customers/{U1}/points"))["balance"] == 200

    summary = await world.run(moment)
    assert summary["points_expiry"] == {"customers": 1, "entries": 1, "points": 300}
    assert await world.balance(U1) == 200
    (entry,) = await world.ledger(U1, "expire")
    assert entry["amount"] == 300 and entry["delta"] == -300 and entry["lot"] == "o-1"
    assert (await world.run(moment + MINUTE))["points_expiry"] == {}  # a rerun expires nothing twice
    after = await world.lookup(U1)
    assert after["altText"] == "現在のポイント: 200pt" and "2038年7月31日(土)" in texts(after)
    history = await world.admin("GET", f"/customers/{U1}/points/history")
    assert [(e["type"], e["delta"]) for e in history["items"]] == [("expire", -300), ("earn", 200), ("earn", 300)]


async def test_a_use_before_the_worker_runs_cannot_spend_expired_points(world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False)
    await world.follow(U1)
    moment = tokyo(2038, 1, 31, 23, 59)
    await world.earn(U1, "o-1", 300, expires_at=moment, at=tokyo(2038, 1, 10, 12, 0))
    await world.earn(U1, "o-2", 200)
    world.clock.set(moment + MINUTE)
    refused = await world.post(U1, "u-1", "use", 250, status=409)
    assert refused["error"]["field"] == "amount" and await world.balance(U1) == 500  # nothing stored
    used = await world.post(U1, "u-2", "use", 150, status=201)
    assert used["balance"] == 50 and await world.balance(U1) == 50
    # The post wrote the expiry first; the worker finds nothing left to do.
    assert [e["amount"] for e in await world.ledger(U1, "expire")] == [300]
    assert (await world.run(moment + 2 * MINUTE))["points_expiry"] == {}
    assert await world.balance(U1) == 50


async def test_a_lot_earned_after_a_reminder_that_expires_sooner_gets_its_own_reminder(world: World) -> None:
    await world.settings(earned_notice=False)
    await world.follow(U1)
    later, sooner = tokyo(2038, 2, 20, 12, 0), tokyo(2038, 2, 17, 12, 0)
    await world.earn(U1, "o-1", 200, expires_at=later, at=tokyo(2038, 1, 5, 12, 0))
    await world.run(later - 7 * DAY)
    assert [alt for _, alt in await world.notices(U1)] == ["200ptが2038年2月20日(土)に失効します"]

    # A campaign's points with a short validity, earned after that reminder: reminded at once (the lead has
    # passed), each lot once, and the first lot is not reminded again when the second has expired.
    await world.earn(U1, "c-1", 50, expires_at=sooner, at=tokyo(2038, 2, 14, 12, 0))
    await world.run(tokyo(2038, 2, 14, 12, 1))
    for at in (sooner - MINUTE, sooner, sooner + DAY, later - MINUTE, later, later + DAY):
        await world.run(at)
    assert [alt for _, alt in await world.notices(U1)] == ["200ptが2038年2月20日(土)に失効します",
                                                           "50ptが2038年2月17日(水)に失効します"]
    assert [e["amount"] for e in await world.ledger(U1, "expire")] == [50, 200]
    assert await world.balance(U1) == 0
