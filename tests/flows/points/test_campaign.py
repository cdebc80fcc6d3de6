"""A points campaign (seed 004, "ポイント還元などキャンペーンの配信"): a broadcast to a segment with a points
condition reaches exactly the reachable customers whose balance meets it at the send moment — after the
worker has expired what ran out at that moment (the expiry job runs before the broadcasts in a tick)."""

from __future__ import annotations

from datetime import timedelta

from tests.flows.points.conftest import World
from tests.flows.points.test_monthly import tokyo

RICH, EXPIRING, POOR, OPTED_OUT, SPENT = (f"U{i:032x}" for i in range(1, 6))
MOMENT = tokyo(2038, 1, 31, 23, 59)
CAMPAIGN = [{"type": "text", "text": "500ポイント以上お持ちのお客様へ:ポイント2倍キャンペーン開催中!"}]


async def test_a_broadcast_to_a_points_segment_counts_balances_after_the_expiries(world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False)
    await world.follow(RICH, EXPIRING, POOR, OPTED_OUT, SPENT)
    world.clock.set(tokyo(2038, 1, 10, 12, 0))
    await world.earn(RICH, "r-1", 800)
    await world.earn(EXPIRING, "x-1", 300, expires_at=MOMENT)
    await world.earn(EXPIRING, "x-2", 300)
    await world.earn(POOR, "p-1", 400)
    await world.earn(OPTED_OUT, "o-1", 1000)
    await world.earn(SPENT, "s-1", 700)
    await world.post(SPENT, "s-2", "use", 300)
    await world.say(OPTED_OUT, "配信停止")

    await world.admin("PUT", "/segments/points-500", {"name": "500pt以上", "filter": {"points_balance": {"min": 500}}})
    preview = await world.admin("GET", "/segments/points-500/preview")
    assert preview["count"] == 2 and sorted(preview["sample"]) == sorted([RICH, EXPIRING])

    send_at = MOMENT + timedelta(minutes=1)
    await world.admin("POST", "/broadcasts", {"broadcast_id": "double-points", "segment_id": "points-500",
                                              "messages": CAMPAIGN, "send_at": send_at.isoformat()}, status=201)
    summary = await world.run(send_at)
    assert summary["points_expiry"] == {"customers": 1, "entries": 1, "points": 300}
    multicasts = await world.sim.messages(kind="multicast")
    assert [m["to"] for m in multicasts] == [[RICH]]  # EXPIRING has 300 left now
    assert multicasts[0]["messages"] == CAMPAIGN and multicasts[0]["retry_key"]
    view = await world.admin("GET", "/broadcasts/double-points")
    assert view["status"] == "done" and view["sent"] == 1
    assert (await world.admin("GET", "/segments/points-500/preview"))["count"] == 1
