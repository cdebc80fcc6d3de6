from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from storage.products import is_available
from tests.admin_api.helpers import BASE, count, error, ok, product


async def test_put_is_idempotent_create_then_update(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    url = f"{BASE}/{shop.shop_id}/products/p1"
    created = await ok(await client.put(url, json=product(), headers=shop.auth), 201)
    assert created["total_stock"] == 5 and created["available"] is True and created["sold_count"] == 0
    again = await ok(await client.put(url, json=product(stock=0), headers=shop.auth), 200)
    assert again["total_stock"] == 0 and again["available"] is False
    assert again["created_at"] == created["created_at"]
    assert await count(client, "products") == 1


@pytest.mark.parametrize(
    ("fields", "available"),
    [
        ({"published": False}, False),
        ({"track_inventory": True, "continue_selling": False, "total_stock": 0}, False),
        ({"track_inventory": True, "continue_selling": True, "total_stock": 0}, True),
        ({"track_inventory": False, "total_stock": 0}, True),
        ({"track_inventory": True, "total_stock": 1}, True),
    ],
)
def test_availability_rule(fields: dict[str, Any], available: bool) -> None:
    assert is_available({"published": True, **fields}) is available


async def test_bulk_upsert_patch_delete_and_list(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    base = f"{BASE}/{shop.shop_id}/products"
    items = [
        {**product(f"商品{i}", stock=i % 3, category="coats" if i % 2 else "bags", tags=["sale"] if i < 5 else []),
         "product_id": f"p{i:03d}"}
        for i in range(300)
    ]
    assert await ok(await client.post(base + "/bulk", json={"products": items}, headers=shop.auth)) == {
        "created": 300, "updated": 0}
    assert await ok(await client.post(base + "/bulk", json={"products": items[:10]}, headers=shop.auth)) == {
        "created": 0, "updated": 10}
    page = await ok(await client.get(base, params={"limit": "100"}, headers=shop.auth))
    assert len(page["items"]) == 100 and page["next_after"] == "p099"
    seen = [item["product_id"] for item in page["items"]]
    while page["next_after"]:
        page = await ok(await client.get(base, params={"limit": "100", "after": page["next_after"]}, headers=shop.auth))
        seen += [item["product_id"] for item in page["items"]]
    assert seen == [f"p{i:03d}" for i in range(300)]
    tagged = await ok(await client.get(base, params={"tag": "sale"}, headers=shop.auth))
    assert [p["product_id"] for p in tagged["items"]] == ["p000", "p001", "p002", "p003", "p004"]
    coats = await ok(await client.get(base, params={"category": "coats", "available": "true", "limit": "200"},
                                      headers=shop.auth))
    assert coats["items"] and all(p["category"] == "coats" and p["total_stock"] > 0 for p in coats["items"])
    unpublished = await ok(await client.patch(base + "/p001", json={"published": False}, headers=shop.auth))
    assert unpublished["published"] is False and unpublished["available"] is False and unpublished["title"] == "商品1"
    await ok(await client.delete(base + "/p001", headers=shop.auth), 204)
    await error(await client.get(base + "/p001", headers=shop.auth), 404)
    await error(await client.delete(base + "/p001", headers=shop.auth), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (product(price=-1), "price"),
        (product(price="100"), "price"),
        (product(price=1.5), "price"),
        (product(variants=[{"id": "v1", "stock": -3}]), "variants[0].stock"),
        (product(variants=[{"id": "v1", "stock": 1}, {"id": "v1", "stock": 2}]), "variants"),
        (product(variants=[]), "variants"),
        (product(url="javascript:alert(1)"), "url"),
        (product(published="yes"), "published"),
        (product(colour="red"), "colour"),
        ({k: v for k, v in product().items() if k != "title"}, "title"),
    ],
)
async def test_bad_product_names_field_and_stores_nothing(
    client: TestClient[Any, Any], make_shop: Any, body: dict[str, Any], field: str
) -> None:
    shop = await make_shop()
    err = await error(await client.put(f"{BASE}/{shop.shop_id}/products/p1", json=body, headers=shop.auth))
    assert err["field"] == field
    assert await count(client, "products") == 0


async def test_bad_path_id_bulk_duplicates_and_malformed_json(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    base = f"{BASE}/{shop.shop_id}/products"
    err = await error(await client.put(base + "/bad%20id", json=product(), headers=shop.auth))
    assert err["field"] == "product_id"
    dup = [{**product(), "product_id": "a"}, {**product(), "product_id": "a"}]
    assert (await error(await client.post(base + "/bulk", json={"products": dup}, headers=shop.auth)))["field"] == "products"
    bad = [{**product(), "product_id": "a"}, {**product(price=-5), "product_id": "b"}]
    assert (await error(await client.post(base + "/bulk", json={"products": bad}, headers=shop.auth)))["field"] == (
        "products[1].price")
    await error(await client.put(base + "/p1", data=b"{", headers=shop.auth), 400)
    assert (await error(await client.get(base, params={"limit": "0"}, headers=shop.auth)))["field"] == "limit"
    assert (await error(await client.get(base, params={"bogus": "1"}, headers=shop.auth)))["field"] == "bogus"
    assert await count(client, "products") == 0
