"""Strict types and identifiers: `true` is no integer, "100" no number, a Unix-seconds number no
date; control characters are refused in names, texts and secrets; path IDs follow one pattern."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.admin_api.helpers import BASE, count, order, product
from tests.conftest import OPERATOR_TOKEN


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (product(price=True), "price"),
        (product(price="100"), "price"),
        (product(price=100.0), "price"),
        (product(variants=[{"id": "v1", "stock": False}]), "variants[0].stock"),
        (product(published="true"), "published"),
        (product(title="コート\x00"), "title"),
        (product(title="a\u0085b"), "title"),
        (product(title="\ud800"), "title"),
        (product(tags=["ok", "bad\x1b[31m"]), "tags[1]"),
    ],
)
async def test_products_refuse_loose_types_and_control_characters(
    client: TestClient[Any, Any], make_shop: Any, body: dict[str, Any], field: str
) -> None:
    shop = await make_shop()
    response = await client.put(f"{BASE}/{shop.shop_id}/products/p1", json=body, headers=shop.auth)
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["field"] == field
    assert await count(client, "products") == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ordered_at": 1_700_000_000}, "ordered_at"),
        ({"ordered_at": "2037-12-01"}, "ordered_at"),
        ({"total": "6000"}, "total"),
        ({"total": True}, "total"),
        ({"items": [{"product_id": "p1", "quantity": True, "price": 1}]}, "items[0].quantity"),
        ({"order_id": "o\x00"}, "order_id"),
    ],
)
async def test_orders_refuse_loose_types(
    client: TestClient[Any, Any], make_shop: Any, fields: dict[str, Any], field: str
) -> None:
    shop = await make_shop()
    response = await client.post(f"{BASE}/{shop.shop_id}/orders", json=order(**fields), headers=shop.auth)
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["field"] == field
    assert await count(client, "orders") == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "店\x00"}, "name"),
        ({"name": "店\n"}, "name"),
        ({"channel_secret": "abc\x00def"}, "channel_secret"),
        ({"channel_secret": "秘密"}, "channel_secret"),
        ({"channel_access_token": "tok\x7f"}, "channel_access_token"),
    ],
)
async def test_shops_refuse_control_characters_in_names_and_secrets(
    client: TestClient[Any, Any], fields: dict[str, Any], field: str
) -> None:
    body = {"name": "店", "channel_secret": "s" * 32, "channel_access_token": "t", **fields}
    response = await client.post("/admin/api/v1/shops", json=body,
                                 headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["field"] == field
    assert await count(client, "shops") == 0


@pytest.mark.parametrize("product_id", ["%2e%2e", "%2E%2E", ".hidden", "-rf", "a%00b", "a%2Fb", "x" * 129, "名前"])
async def test_path_ids_follow_the_identifier_pattern(
    client: TestClient[Any, Any], make_shop: Any, product_id: str
) -> None:
    shop = await make_shop()
    response = await client.put(f"{BASE}/{shop.shop_id}/products/{product_id}", json=product(), headers=shop.auth)
    assert response.status in (404, 422), await response.text()
    if response.status == 422:
        assert (await response.json())["error"]["field"] == "product_id"
    assert await count(client, "products") == 0


async def test_documented_identifiers_are_accepted(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    for product_id in ("a@b", "SKU-1", "o:123", "p.1"):
        response = await client.put(f"{BASE}/{shop.shop_id}/products/{product_id}", json=product(), headers=shop.auth)
        assert response.status == 201, await response.text()
