"""The monthly marking's write for many customers: only theirs, only where `when` holds, never a claimed
contact's due time, creating the contacts that do not exist yet; done twice, it changes nothing."""

from __future__ import annotations

from datetime import timedelta

from storage.contacts import NEVER, ContactRepository
from tests.conftest import START
from tests.flows.points.conftest import World

FIELDS = {"month": "2038-01", "due_at": START}
WHEN = {"flows.points_monthly.month": {"$ne": "2038-01"}}


async def test_a_write_for_many_marks_exactly_the_customers_named(world: World) -> None:
    repo = ContactRepository(world.db)
    shop = world.shop.shop_id
    for n in range(6):
        await repo.put_flow_states(shop, f"U{n}", {"points_expiry": {"due_at": None}}, due_at=None)
    await repo.put_flow_states(shop, "U3", {"points_monthly": {"month": "2038-01", "due_at": None}}, due_at=None)
    await world.db["contacts"].update_one({"_id": f"{shop}:U4"}, {"$set": {"claim": "worker", "next_due_at":
                                                                           START + timedelta(minutes=5)}})
    named = ["U0", "U1", "U3", "U4", "U7"]  # U3 is marked already, U4 is held by a worker, U7 has no contact yet
    assert await repo.put_flow_state_many(shop, named, "points_monthly", FIELDS, due_at=START, when=WHEN) == 4
    docs = {doc["line_user_id"]: doc async for doc in world.db["contacts"].find({})}
    for user in ("U0", "U1", "U4", "U7"):
        assert docs[user]["flows"]["points_monthly"] == FIELDS
    assert docs["U0"]["next_due_at"] == START and docs["U0"]["v"] == 2
    assert docs["U3"]["flows"]["points_monthly"]["due_at"] is None and docs["U3"]["v"] == 2
    assert docs["U4"]["next_due_at"] == START + timedelta(minutes=5)  # held: its settle will see the change
    assert docs["U7"]["shop_id"] == shop and docs["U7"]["next_due_at"] == START
    for user in ("U2", "U5"):
        assert "points_monthly" not in docs[user]["flows"] and docs[user]["next_due_at"] == NEVER
    assert await repo.put_flow_state_many(shop, named, "points_monthly", FIELDS, due_at=START, when=WHEN) == 0
