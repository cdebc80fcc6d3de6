"""Request bodies and small helpers shared by the admin API tests."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE

BASE = "/admin/api/v1/shops"


def product(title: str = "ウールコート", stock: int = 5, **fields: Any) -> dict[str, Any]:
    return {
        "title": title,
        "url": "https://shop.example/products/coat",
        "image_url": "https://shop.example/img/coat.jpg",
        "price": 12000,
        "published": True,
        "track_inventory": True,
        "continue_selling": False,
        "variants": [{"id": "v1", "title": "M", "stock": stock}, {"id": "v2", "title": "L", "stock": 0}],
        **fields,
    }


def order(order_id: str = "o-1", **fields: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "line_user_id": "U1",
        "items": [{"product_id": "p1", "variant_id": "v1", "quantity": 2, "price": 3000}],
        "total": 6000,
        "status": "paid",
        "ordered_at": "2037-11-30T10:00:00+09:00",
        **fields,
    }


async def count(client: TestClient[web.Request, web.Application], collection: str, query: dict[str, Any] | None = None) -> int:
    return await client.app[DATABASE][collection].count_documents(query or {})


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json() if status != 204 else None


async def error(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]
