"""Another shop's key gets 401 on every route family, and nothing of the first shop leaks or changes."""

from typing import Any

from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from tests.admin_api.helpers import BASE, ok, order, product


async def snapshot(client: TestClient[Any, Any]) -> dict[str, list[Any]]:
    db = client.app[DATABASE]
    return {name: [doc async for doc in db[name].find({}).sort("_id", 1)]
            for name in ("products", "orders", "customers", "points_ledger", "shop_settings")}


async def test_other_shops_key_is_refused_everywhere(client: TestClient[Any, Any], make_shop: Any) -> None:
    owner, intruder = await make_shop(), await make_shop()
    base = f"{BASE}/{owner.shop_id}"
    await ok(await client.put(f"{base}/products/p1", json=product(), headers=owner.auth), 201)
    await ok(await client.post(f"{base}/orders", json=order(), headers=owner.auth), 201)
    await ok(await client.post(f"{base}/points/transactions",
                               json={"transaction_id": "t1", "line_user_id": "U1", "type": "earn", "amount": 5},
                               headers=owner.auth), 201)
    before = await snapshot(client)
    calls = [
        ("GET", "/products", None), ("GET", "/products/p1", None), ("PUT", "/products/p1", product()),
        ("PATCH", "/products/p1", {"published": False}), ("DELETE", "/products/p1", None),
        ("POST", "/products/bulk", {"products": [{**product(), "product_id": "p2"}]}),
        ("GET", "/orders", None), ("GET", "/orders/o-1", None), ("POST", "/orders", order(status="refunded")),
        ("POST", "/orders/bulk", {"orders": [order("o-2")]}),
        ("GET", "/customers", None), ("GET", "/customers/U1", None), ("PATCH", "/customers/U1", {"rank": "x"}),
        ("POST", "/customers/tags", {"line_user_ids": ["U1"], "add": ["t"]}),
        ("POST", "/customers/mappings", {"mappings": [{"shop_customer_id": "c", "line_user_id": "U1"}]}),
        ("POST", "/points/transactions", {"transaction_id": "t2", "line_user_id": "U1", "type": "earn", "amount": 5}),
        ("GET", "/customers/U1/points", None), ("GET", "/customers/U1/points/history", None),
        ("GET", "/settings/reminders", None), ("PUT", "/settings/reminders", {"enabled": True}),
    ]
    anonymous: dict[str, str] = {}
    for method, path, body in calls:
        for headers in (intruder.auth, anonymous):
            response = await client.request(method, base + path, json=body, headers=headers)
            text = await response.text()
            assert response.status == 401, (method, path, text)
            assert "U1" not in text and "ウールコート" not in text
    # the intruder's own shop sees nothing of the owner's
    mine = f"{BASE}/{intruder.shop_id}"
    assert (await ok(await client.get(f"{mine}/products", headers=intruder.auth)))["items"] == []
    assert (await ok(await client.get(f"{mine}/orders", headers=intruder.auth)))["items"] == []
    assert (await ok(await client.get(f"{mine}/customers", headers=intruder.auth)))["items"] == []
    assert (await client.get(f"{mine}/products/p1", headers=intruder.auth)).status == 404
    assert (await client.get(f"{mine}/customers/U1", headers=intruder.auth)).status == 404
    points = await ok(await client.get(f"{mine}/customers/U1/points", headers=intruder.auth))
    assert points["balance"] == 0
    assert await snapshot(client) == before
