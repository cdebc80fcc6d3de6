"""The main list/filter queries of the admin API run on an index (explain shows IXSCAN, no COLLSCAN)."""

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE

SHOP = "shp_x"
AT = datetime(2037, 11, 1, tzinfo=UTC)


def stages(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "stage" in plan:
            found.add(plan["stage"])
        for value in plan.values():
            found |= stages(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= stages(value)
    return found


QUERIES = [
    ("products", {"shop_id": SHOP, "product_id": {"$gt": "a"}}, [("product_id", 1)]),
    ("products", {"shop_id": SHOP, "tags": "sale"}, [("product_id", 1)]),
    ("products", {"shop_id": SHOP, "category": "coats"}, [("product_id", 1)]),
    ("products", {"shop_id": SHOP, "available": True}, [("product_id", 1)]),
    ("products", {"shop_id": SHOP, "available": True}, [("sold_count", -1)]),
    ("orders", {"shop_id": SHOP, "ordered_at": {"$lt": AT}}, [("ordered_at", -1), ("_id", -1)]),
    ("orders", {"shop_id": SHOP, "line_user_id": "U1", "ordered_at": {"$gte": AT}}, [("ordered_at", -1), ("_id", -1)]),
    ("orders", {"shop_id": SHOP, "status": "paid"}, [("ordered_at", -1), ("_id", -1)]),
    ("customers", {"shop_id": SHOP, "tags": "vip", "line_user_id": {"$gt": "U"}}, [("line_user_id", 1)]),
    ("customers", {"shop_id": SHOP, "friend": True}, [("line_user_id", 1)]),
    ("customers", {"shop_id": SHOP, "linked": True}, [("line_user_id", 1)]),
    ("customers", {"shop_id": SHOP, "rank": "gold"}, [("line_user_id", 1)]),
    ("customers", {"shop_id": SHOP, "shop_customer_id": "c1"}, None),
    ("customers", {"shop_id": SHOP, "email": "a@b.jp"}, None),
    ("points_ledger", {"shop_id": SHOP, "line_user_id": "U1"}, [("occurred_at", -1), ("_id", -1)]),
]


@pytest.mark.parametrize(("collection", "query", "sort"), QUERIES)
async def test_query_uses_an_index(
    client: TestClient[Any, Any], collection: str, query: dict[str, Any], sort: list[tuple[str, int]] | None
) -> None:
    db = client.app[DATABASE]
    await db[collection].insert_many([
        {"_id": f"{SHOP}:{i}", "shop_id": SHOP, "line_user_id": f"U{i}", "product_id": f"p{i}", "order_id": f"o{i}",
         "transaction_id": f"t{i}", "ordered_at": AT, "occurred_at": AT}
        for i in range(20)
    ])
    cursor = db[collection].find(query)
    if sort:
        cursor = cursor.sort(sort)
    plan = (await cursor.limit(50).explain())["queryPlanner"]["winningPlan"]
    assert "IXSCAN" in stages(plan) and "COLLSCAN" not in stages(plan), plan
