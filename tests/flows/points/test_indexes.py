"""The points jobs' hot queries run on an index: the due expiries and the monthly marking's `_id` ranges."""

from __future__ import annotations

import json
from datetime import timedelta

from flows.points.plan import MONTHLY
from storage.contacts import BY_ID, shop_range
from storage.points import PointsRepository
from tests.conftest import START
from tests.flows.points.conftest import World

USERS = [f"U{i:032x}" for i in range(1, 6)]


async def test_the_expiry_and_monthly_queries_use_their_indexes(world: World) -> None:
    for user in USERS:
        await world.earn(user, f"{user}-1", 100, expires_at=START + timedelta(days=1), at=START)
    due = PointsRepository(world.db).due_cursor(world.shop.shop_id, START + timedelta(days=2))
    plan = json.dumps(await due.explain(), default=str)
    assert "COLLSCAN" not in plan and "shop_points_expiry" in plan
    assert len([doc async for doc in PointsRepository(world.db).due_cursor(world.shop.shop_id, START)]) == 0

    marking = world.db["contacts"].find({"_id": shop_range(world.shop.shop_id), f"flows.{MONTHLY}.member": True,
                                         f"flows.{MONTHLY}.month": {"$ne": "2038-01"}}, {"_id": 1}).hint(BY_ID)
    plan = json.dumps(await marking.explain(), default=str)
    assert "COLLSCAN" not in plan
    assert len([doc async for doc in marking]) == len(USERS)
