"""A holdout through the app: held customers are recorded, not sent to; the report shows both groups and the lift."""

from __future__ import annotations

from datetime import timedelta

from delivery.policy import in_holdout
from tests.conftest import START
from tests.flows.reminders.conftest import World, days

USERS = [f"U{i:032x}" for i in range(200, 260)]


async def test_held_customers_are_recorded_and_the_report_compares_the_groups(world: World) -> None:
    await world.settings(quiet_hours={"enabled": False})
    response = await world.client.put(f"/admin/api/v1/shops/{world.shop.shop_id}/settings/delivery",
                                      json={"holdout_percent": 50}, headers=world.shop.auth)
    assert response.status == 200, await response.text()
    await world.product("p1")
    for user in USERS:
        await world.customer(user)
        await world.view(user, "p1", START)
    held = {u for u in USERS if in_holdout(world.shop.shop_id, "reminders", u, 50)}
    assert 0 < len(held) < len(USERS)

    summary = await world.run(START + days(3))
    assert summary["sent"] == len(USERS) - len(held) and summary["held:holdout"] == len(held)
    assert {p["to"] for p in await world.pushes()} == set(USERS) - held  # nobody held out got a message
    assert [(await world.reminder(u))["next_step"] for u in sorted(held)[:3]] == [1, 1, 1]  # held steps advance too

    # Half of each group buys within the window; one treated customer buys twice.
    buyers = sorted(set(USERS) - held)[: (len(USERS) - len(held)) // 2] + sorted(held)[: len(held) // 4]
    for n, user in enumerate(buyers):
        await world.order(user, f"o-{n}", [("p1", 5000)], START + days(3) + timedelta(hours=1 + n % 5))
    await world.order(buyers[0], "o-again", [("p1", 3000)], START + days(4))

    report = await world.report(**{"from": "2037-12-01", "to": "2037-12-10"})
    treated, holdout, lift = report["treated"], report["holdout"], report["lift"]
    assert treated["customers"] == len(USERS) - len(held) and holdout["customers"] == len(held)
    assert treated["conversions"] == (len(USERS) - len(held)) // 2 and holdout["conversions"] == len(held) // 4
    assert treated["orders"] == treated["conversions"] + 1 and treated["revenue"] == 5000 * treated["conversions"] + 3000
    assert lift["difference"] == lift["treated_rate"] - lift["holdout_rate"]
    assert lift["low"] < lift["difference"] < lift["high"] and lift["method"] == "newcombe-wilson"
    step1 = report["steps"][0]
    assert step1["held"] == len(held) and step1["targeted"] == len(USERS)
    assert step1["conversions"] == treated["conversions"] + 1  # per step: treated orders only
