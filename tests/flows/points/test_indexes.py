"""The points jobs' reads run on an index, without hints (a hinted query makes the embedded database walk the
whole index): the due expiries and the shop's customers for the monthly marking. (The marking's writes go by
`_id $in`, which the embedded database's explain reports as a scan whatever it does; bench_points measures
them against a collection of other shops' contacts instead.)"""

from __future__ import annotations

import json
from datetime import timedelta

from storage.points import PointsRepository
from tests.conftest import START
from tests.flows.points.conftest import World

USERS = [f"U{i:032x}" for i in range(1, 6)]


async def test_the_expiry_and_monthly_queries_use_indexes(world: World) -> None:
    for user in USERS:
        await world.earn(user, f"{user}-1", 100, expires_at=START + timedelta(days=1), at=START)
    repo = PointsRepository(world.db)
    due = repo.due_cursor(world.shop.shop_id, START + timedelta(days=2))
    plan = json.dumps(await due.explain(), default=str)
    assert "COLLSCAN" not in plan and "shop_points_expiry" in plan
    assert [doc async for doc in repo.due_cursor(world.shop.shop_id, START)] == []
    assert len([doc async for doc in repo.due_cursor(world.shop.shop_id, START + timedelta(days=1))]) == 5

    holders = world.db["customers"].find({"shop_id": world.shop.shop_id}, {"line_user_id": 1, "points.balance": 1})
    assert "COLLSCAN" not in json.dumps(await holders.explain(), default=str)
    assert [users async for users in repo.holders(world.shop.shop_id, 3)] == [USERS[:3], USERS[3:]]

