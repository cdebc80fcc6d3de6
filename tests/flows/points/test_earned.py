"""Earned-points notice: announced at the next run, several earns are one message, a button to the shop."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from tests.conftest import START
from tests.flows.points.conftest import SHOP_URL, World, texts

U1 = "U" + "a1" * 16
U2 = "U" + "b2" * 16
MINUTE = timedelta(minutes=1)


async def test_two_earns_before_a_run_are_one_message_with_the_total_and_the_balance(world: World) -> None:
    await world.settings()
    await world.follow(U1, U2)
    await world.earn(U1, "o-1", 100, at=START)
    await world.earn(U1, "o-2", 50, at=START + MINUTE)
    await world.earn(U2, "o-3", 30)
    assert await world.pushes() == []  # announced by the worker, not at ingest

    summary = await world.run(START + 2 * MINUTE)
    assert summary["delivery"]["points_earned:sent"] == 2
    assert sorted(await world.notices()) == [(U1, "150ptを獲得しました(現在 150pt)"),
                                             (U2, "30ptを獲得しました(現在 30pt)")]
    (push,) = await world.pushes(U1)
    assert push["retry_key"]
    bubble = push["messages"][0]["contents"]
    assert "+150pt" in texts(push["messages"][0]) and "テストショップ" in texts(push["messages"][0])
    assert bubble["header"]["backgroundColor"] == "#06C755"  # the shop's colour (its rich menu's buttons)
    button = bubble["footer"]["contents"][0]
    assert button["action"]["label"] == "ショップを見る" and button["color"] == "#06C755"

    # Nothing new: nothing sent. A later earn: only that one is announced.
    await world.run(START + 3 * MINUTE)
    await world.earn(U1, "o-4", 20, at=START + 10 * MINUTE)
    await world.run(START + 11 * MINUTE)
    assert [alt for _, alt in await world.notices(U1)] == ["150ptを獲得しました(現在 150pt)",
                                                           "20ptを獲得しました(現在 170pt)"]

    # The button goes to the shop through our click link; the click and a later order count for the notice.
    click = urlsplit(button["action"]["uri"])
    response = await world.client.get(click.path, allow_redirects=False)
    assert response.status == 302 and response.headers["Location"].startswith(SHOP_URL)
    await world.admin("POST", "/orders", {"order_id": "ord-1", "line_user_id": U1, "status": "paid", "total": 5000,
                                          "items": [{"product_id": "p1", "quantity": 1, "price": 5000}]})
    await world.run(START + 12 * MINUTE)  # the earn the order's points would bring is the shop's; none posted
    report = (await world.report())["earned"]
    assert report["totals"]["sent"] == 3 and report["totals"]["clicks"] == 1
    assert report["totals"]["conversions"] == 1 and report["totals"]["revenue"] == 5000
