import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from storage.points import replay_lots, soonest_expiring
from tests.admin_api.helpers import BASE, count, error, ok

D = datetime(2037, 1, 1, tzinfo=UTC)


def entry(i: int, delta: int, expires: datetime | None = None) -> dict[str, Any]:
    return {"_id": f"t{i}", "delta": delta, "expires_at": expires, "occurred_at": D.replace(day=1 + i)}


def test_debits_consume_soonest_expiring_lots_first() -> None:
    lots = replay_lots([
        entry(0, 100, D.replace(month=6)),
        entry(1, 50, D.replace(month=3)),
        entry(2, 30),  # positive adjust: never expires
        entry(3, -70),  # takes the March lot (50) then 20 of June
    ])
    assert [(lot.amount, lot.expires_at) for lot in lots] == [(80, D.replace(month=6)), (30, None)]
    assert soonest_expiring(lots) == (80, D.replace(month=6))
    assert soonest_expiring(lots, after=D.replace(month=7)) == (None, None)


async def post(client: TestClient[Any, Any], shop: Any, **body: Any) -> Any:
    return await client.post(f"{BASE}/{shop.shop_id}/points/transactions", json={"line_user_id": "U1", **body},
                             headers=shop.auth)


async def test_ledger_is_idempotent_and_summarises(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    earn = {"transaction_id": "t1", "type": "earn", "amount": 500, "expires_at": "2038-03-31T15:00:00Z"}
    assert (await ok(await post(client, shop, **earn), 201))["balance"] == 500
    assert (await ok(await post(client, shop, **earn), 200))["balance"] == 500
    conflict = await error(await post(client, shop, **{**earn, "amount": 600}), 409)
    assert conflict["field"] == "transaction_id"
    await ok(await post(client, shop, transaction_id="t2", type="earn", amount=200, expires_at="2038-01-31T15:00:00Z"), 201)
    used = await ok(await post(client, shop, transaction_id="t3", type="use", amount=250), 201)
    assert used["balance"] == 450
    assert (await error(await post(client, shop, transaction_id="t4", type="use", amount=451), 409))["field"] == "amount"
    summary = await ok(await client.get(f"{BASE}/{shop.shop_id}/customers/U1/points", headers=shop.auth))
    assert summary == {"line_user_id": "U1", "balance": 450, "soonest_expiring_amount": 450,
                       "soonest_expiry_at": "2038-03-31T15:00:00Z"}
    customer = await ok(await client.get(f"{BASE}/{shop.shop_id}/customers/U1", headers=shop.auth))
    assert customer["points"]["balance"] == 450
    history = await ok(await client.get(f"{BASE}/{shop.shop_id}/customers/U1/points/history",
                                        params={"limit": "2"}, headers=shop.auth))
    assert [e["transaction_id"] for e in history["items"]] == ["t3", "t2"]
    rest = await ok(await client.get(f"{BASE}/{shop.shop_id}/customers/U1/points/history",
                                     params={"limit": "2", "after": history["next_after"]}, headers=shop.auth))
    assert [e["transaction_id"] for e in rest["items"]] == ["t1"] and rest["next_after"] is None
    assert await count(client, "points_ledger") == 3


async def test_concurrent_posts_never_miscount(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    await ok(await post(client, shop, transaction_id="seed", type="earn", amount=100), 201)
    posts = [post(client, shop, transaction_id=f"e{i % 10}", type="earn", amount=10) for i in range(30)]
    posts += [post(client, shop, transaction_id=f"u{i}", type="use", amount=30) for i in range(8)]
    statuses = [r.status for r in await asyncio.gather(*posts)]
    accepted_uses = statuses[30:].count(201)
    assert statuses[:30].count(201) == 10 and statuses[30:].count(409) == 8 - accepted_uses
    summary = await ok(await client.get(f"{BASE}/{shop.shop_id}/customers/U1/points", headers=shop.auth))
    assert summary["balance"] == 100 + 100 - 30 * accepted_uses >= 0
    assert await count(client, "points_ledger") == 11 + accepted_uses


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"transaction_id": "x", "type": "earn", "amount": -5}, "amount"),
        ({"transaction_id": "x", "type": "adjust", "amount": 0}, "amount"),
        ({"transaction_id": "x", "type": "use", "amount": 5, "expires_at": "2038-01-01T00:00:00Z"}, "expires_at"),
        ({"transaction_id": "x", "type": "gift", "amount": 5}, "type"),
        ({"transaction_id": "x", "type": "earn", "amount": "5"}, "amount"),
        ({"transaction_id": "x", "type": "earn", "amount": 5, "customer_id": "c1"}, "line_user_id"),
        ({"transaction_id": "x", "type": "earn", "amount": 5, "expires_at": "2038-01-01"}, "expires_at"),
    ],
)
async def test_bad_transactions_store_nothing(
    client: TestClient[Any, Any], make_shop: Any, body: dict[str, Any], field: str
) -> None:
    shop = await make_shop()
    assert (await error(await post(client, shop, **body)))["field"] == field
    assert await count(client, "points_ledger") == 0 and await count(client, "customers") == 0
