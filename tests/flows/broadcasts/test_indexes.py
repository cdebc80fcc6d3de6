"""Every query the broadcast machinery runs at scale is planned on an index (explain on the embedded database)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from storage.broadcasts import BroadcastRepository, broadcast_key
from storage.segments import SegmentRepository, segment_key
from tests.conftest import START
from tests.flows.broadcasts.conftest import World, user


async def plan_of(cursor: Any) -> str:
    return json.dumps(await cursor.explain(), default=str)


async def test_broadcast_queries_ride_their_indexes(world: World) -> None:
    await world.customers([world.customer_doc(user(i), tags=["vip"]) for i in range(3)])
    await world.segment("vip", {"tags_all": ["vip"]})
    await world.broadcast("b1", "vip")
    await world.run(START)
    db, shop = world.db, world.shop.shop_id
    repo = BroadcastRepository(db)
    cursors = {
        "broadcast_due": repo.starts.due_cursor(START, 10),
        "batch_due": repo.batches.due_cursor(START, 10),
        "segment_menu_due": SegmentRepository(db).menus.due_cursor(START, 10),
        "shop_started": db["broadcasts"].find({"shop_id": shop, "started_at": {"$gte": START - timedelta(days=8),
                                                                               "$lte": START}}),
        "broadcast_seq": db["broadcast_batches"].find({"bkey": broadcast_key(shop, "b1")}),
        "shop_unfollowed": db["customers"].find({"shop_id": shop, "unfollowed_at": {"$gte": START}}),
        "shop_opted_out_at": db["customers"].find({"shop_id": shop, "opted_out_at": {"$gte": START}}),
        "segment_gen": db["segment_members"].find({"skey": segment_key(shop, "vip"), "gen": 1}),
        "shop_created": db["broadcasts"].find({"shop_id": shop, "created_at": {"$lt": START}}),
        "key_at": db["clicks"].find({"key": "k", "at": {"$gte": START, "$lt": START + timedelta(days=1)}}),
    }
    for index, cursor in cursors.items():
        plan = await plan_of(cursor)
        assert "COLLSCAN" not in plan and index in plan, (index, plan)
