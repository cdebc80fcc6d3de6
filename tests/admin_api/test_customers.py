from typing import Any

from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from storage.customers import CustomerRepository
from tests.admin_api.helpers import BASE, error, ok, order


async def test_customer_view_has_the_interface_fields(client: TestClient[Any, Any], make_shop: Any, clock: Any) -> None:
    shop = await make_shop()
    db = client.app[DATABASE]
    await CustomerRepository(db).record_follow(shop.shop_id, "U1", {"displayName": "花子"}, False, clock.now())
    await db["customers"].update_one({"_id": f"{shop.shop_id}:U1"}, {"$set": {"linked": True, "browser_ids": ["b1"]}})
    await db["browsers"].insert_one({"_id": f"{shop.shop_id}:b1", "shop_id": shop.shop_id, "browser_id": "b1",
                                     "line_user_id": "U1", "link_method": "login", "linked_at": clock.now()})
    await ok(await client.post(f"{BASE}/{shop.shop_id}/orders", json=order(), headers=shop.auth), 201)
    body = await ok(await client.get(f"{BASE}/{shop.shop_id}/customers/U1", headers=shop.auth))
    assert body["friend"] is True and body["blocked"] is False and body["opted_out"] is False
    assert body["display_name"] == "花子" and body["tags"] == []
    assert [b["browser_id"] for b in body["browsers"]] == ["b1"] and body["browsers"][0]["link_method"] == "login"
    assert body["points"] == {"balance": 0, "soonest_expiring_amount": None, "soonest_expiry_at": None}
    assert body["totals"]["purchase_count"] == 1 and body["totals"]["total_spend"] == 6000
    await error(await client.get(f"{BASE}/{shop.shop_id}/customers/U404", headers=shop.auth), 404)


async def test_bulk_tags_rank_filters_and_paging(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    url = f"{BASE}/{shop.shop_id}/customers"
    users = [f"U{i:02d}" for i in range(12)]
    tag = "subscription-123-plan:定期便A"
    await ok(await client.post(url + "/tags", json={"line_user_ids": users, "add": [tag, "vip"], "rank": "gold"},
                               headers=shop.auth))
    await ok(await client.post(url + "/tags", json={"line_user_ids": users[:4], "remove": ["vip"]}, headers=shop.auth))
    one = await ok(await client.get(url + "/U00", headers=shop.auth))
    assert one["tags"] == [tag] and one["rank"] == "gold" and one["friend"] is False
    vip = await ok(await client.get(url, params={"tag": "vip", "limit": "5"}, headers=shop.auth))
    assert [c["line_user_id"] for c in vip["items"]] == users[4:9] and vip["next_after"] == "U08"
    more = await ok(await client.get(url, params={"tag": "vip", "limit": "5", "after": "U08"}, headers=shop.auth))
    assert [c["line_user_id"] for c in more["items"]] == users[9:]
    assert len((await ok(await client.get(url, params={"rank": "gold", "friend": "false", "limit": "200"},
                                          headers=shop.auth)))["items"]) == 12
    await ok(await client.post(url + "/tags", json={"line_user_ids": ["U00"], "rank": None}, headers=shop.auth))
    assert (await ok(await client.get(url + "/U00", headers=shop.auth)))["rank"] is None
    both = await error(await client.post(url + "/tags", json={"line_user_ids": ["U00"], "add": ["a"], "remove": ["a"]},
                                         headers=shop.auth))
    assert both["field"] == "remove"
    assert (await error(await client.post(url + "/tags", json={"line_user_ids": []}, headers=shop.auth)))[
        "field"] == "line_user_ids"
    assert (await error(await client.get(url, params={"friend": "maybe"}, headers=shop.auth)))["field"] == "friend"


async def test_shop_customer_id_mapping_moves(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    url = f"{BASE}/{shop.shop_id}/customers"
    await ok(await client.post(url + "/mappings", json={"mappings": [{"shop_customer_id": "c1", "line_user_id": "Ua"}]},
                               headers=shop.auth))
    await ok(await client.post(url + "/mappings", json={"mappings": [{"shop_customer_id": "c1", "line_user_id": "Ub"}]},
                               headers=shop.auth))
    assert (await ok(await client.get(url + "/Ua", headers=shop.auth)))["shop_customer_id"] is None
    assert (await ok(await client.get(url + "/Ub", headers=shop.auth)))["shop_customer_id"] == "c1"
    dup = {"mappings": [{"shop_customer_id": "c2", "line_user_id": "Ua"}, {"shop_customer_id": "c2", "line_user_id": "Uc"}]}
    assert (await error(await client.post(url + "/mappings", json=dup, headers=shop.auth)))["field"] == "mappings"
    patched = await ok(await client.patch(url + "/Ua", json={"rank": "silver", "tags": ["x"]}, headers=shop.auth))
    assert patched["rank"] == "silver" and patched["tags"] == ["x"]
    assert (await error(await client.patch(url + "/Ua", json={"tags": None}, headers=shop.auth)))["field"] == "tags"
