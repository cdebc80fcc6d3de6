"""A webhook batch's customer writes: new customers inserted as the batch leaves them, known ones updated with
their changes merged in order, and a customer created meanwhile by someone else updated, not duplicated."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from core.clock import FixedClock
from storage.customers import (
    WRITE_CHUNK,
    CustomerRepository,
    follow_change,
    merge,
    opt_out_change,
    unfollow_change,
)


async def test_batch_writes_new_known_and_raced_customers(client: TestClient[Any, Any], clock: FixedClock) -> None:
    db = client.app[DATABASE]
    repository = CustomerRepository(db)
    now = clock.now()
    await repository.update_fields("s1", "U_known", {"rank": "gold"}, now)
    changes = [
        follow_change("s1", "U_new", {"displayName": "花子"}, False, now),
        opt_out_change("s1", "U_new", True, now),
        unfollow_change("s1", "U_known", now),
        follow_change("s1", "U_known", None, True, now),
        follow_change("s1", "U_raced", None, False, now),
    ]
    # What the batch computed for the customers it did not find; U_raced was created in between.
    created = {user: merge([c for c in changes if c.line_user_id == user]).applied(None) for user in ("U_new", "U_raced")}
    await repository.update_fields("s1", "U_raced", {"rank": "silver"}, now)
    await repository.apply_batch(changes, created)

    new = await repository.get("s1", "U_new")
    assert new is not None and new["friend"] is True and new["opted_out"] is True and new["display_name"] == "花子"
    assert new["tags"] == [] and new["blocked"] is False
    known = await repository.get("s1", "U_known")
    assert known is not None and known["rank"] == "gold" and known["friend"] is True and known["blocked"] is False
    assert known["is_unblocked"] is True
    raced = await repository.get("s1", "U_raced")
    assert raced is not None and raced["rank"] == "silver" and raced["friend"] is True
    assert await db["customers"].count_documents({"shop_id": "s1"}) == 3


async def test_a_large_batch_goes_in_several_statements_and_finds_raced_customers_in_any_of_them(
    client: TestClient[Any, Any], clock: FixedClock
) -> None:
    db = client.app[DATABASE]
    repository = CustomerRepository(db)
    now = clock.now()
    users = [f"U_{n:02}" for n in range(3 * WRITE_CHUNK + 2)]
    raced = {users[1], users[WRITE_CHUNK + 3], users[-1]}  # one in the first, a middle and the last statement
    changes = [follow_change("s2", user, {"displayName": user}, False, now) for user in users]
    created = {user: merge([c for c in changes if c.line_user_id == user]).applied(None) for user in users}
    for user in raced:
        await repository.update_fields("s2", user, {"rank": "silver"}, now)
    await repository.apply_batch(changes, created)
    assert await db["customers"].count_documents({"shop_id": "s2"}) == len(users)
    for user in users:
        customer = await repository.get("s2", user)
        assert customer is not None and customer["friend"] is True and customer["display_name"] == user
        assert customer.get("rank") == ("silver" if user in raced else None), user
