"""The cart routes: bad input refused with the field named, customer search by cart state, the dry run, indexes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from storage.keys import settings_key
from tests.conftest import START
from tests.flows.carts.conftest import RECOVERY, CartWorld, hours, user

U1, U2, U3 = user(1), user(2), user(3)
ITEM = {"product_id": "p1", "quantity": 1, "price": 12800}


@pytest.mark.parametrize(("body", "field"), [
    ({"items": [{**ITEM, "quantity": 0}]}, "items[0].quantity"),
    ({"items": [{**ITEM, "quantity": 100_001}]}, "items[0].quantity"),
    ({"items": [{**ITEM, "quantity": "2"}]}, "items[0].quantity"),
    ({"items": [{**ITEM, "quantity": 1.5}]}, "items[0].quantity"),
    ({"items": [{**ITEM, "price": -1}]}, "items[0].price"),
    ({"items": [{**ITEM, "price": "12800"}]}, "items[0].price"),
    ({"items": [{"product_id": "p1", "quantity": 1}]}, "items[0].price"),
    ({"items": [{**ITEM, "product_id": "bad id"}]}, "items[0].product_id"),
    ({"items": [{**ITEM, "image_url": "javascript:x"}]}, "items[0].image_url"),
    ({"items": [ITEM] * 101}, "items"),
    ({"items": [ITEM], "stage": "paid"}, "stage"),
    ({"items": [ITEM], "updated_at": "2037-12-01T10:00:00"}, "updated_at"),
    ({"items": [ITEM], "colour": "red"}, "colour"),
    ({}, "items"),
])
async def test_bad_carts_are_refused_with_the_field_named_and_change_nothing(world: CartWorld, body: dict[str, Any],
                                                                            field: str) -> None:
    response = await world.client.put(f"{world.base}/carts/t1", json=body, headers=world.shop.auth)
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["field"] == field
    assert await world.db["carts"].count_documents({}) == 0


async def test_bad_tokens_unknown_carts_and_a_template_without_the_token(world: CartWorld) -> None:
    long = "t" * 201
    response = await world.client.put(f"{world.base}/carts/{long}", json={"items": [ITEM]}, headers=world.shop.auth)
    assert response.status == 422 and (await response.json())["error"]["field"] == "cart_token"
    for path in ("/carts/nope", "/carts/nope/dry-run"):
        response = await world.client.get(world.base + path, headers=world.shop.auth)
        assert response.status == 404 and (await response.json())["error"]["field"] == "cart_token"
    for template, problem in (("https://shop.example/cart", "{cart_token}"), ("ftp://x/{cart_token}", "http"),
                              (None, "required"), ("https://shop.example/" + "x" * 400 + "{cart_token}", "400")):
        response = await world.client.put(f"{world.base}/settings/cart", headers=world.shop.auth,
                                          json={"enabled": True, "recovery_url_template": template})
        assert response.status == 422
        error = (await response.json())["error"]
        assert error["field"] == "recovery_url_template" and problem in error["message"]
    response = await world.client.get(f"{world.base}/settings/cart", headers=world.shop.auth)
    assert (await response.json())["enabled"] is False  # nothing changed


async def test_an_unknown_product_is_kept_and_shown(world: CartWorld) -> None:
    await world.settings()
    await world.customer(U1)
    items = [{"product_id": "not-in-catalogue", "quantity": 2, "price": 500, "title": "限定セット",
              "image_url": "https://cdn.example/set.png"}]
    _, cart = await world.put_cart(START, "u", items, expect=201, line_user_id=U1)
    assert cart["items"][0]["product_id"] == "not-in-catalogue" and cart["value"] == 1000
    await world.run(START + hours(3))
    (push,) = await world.pushes(U1)
    bubble = push["messages"][1]["contents"]["contents"][0]
    assert bubble["hero"]["url"] == "https://cdn.example/set.png"
    assert "限定セット" in json.dumps(bubble, ensure_ascii=False)


async def search(world: CartWorld, **query: str) -> dict[str, Any]:
    response = await world.client.get(f"{world.base}/carts", params=query, headers=world.shop.auth)
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def test_customer_search_by_cart_state(world: CartWorld) -> None:
    await world.settings()
    await world.customer(U1)
    await world.customer(U2)
    await world.put_cart(START, "small", [{**ITEM, "price": 1000}], expect=201, line_user_id=U1)
    await world.put_cart(START + hours(1), "big", [{**ITEM, "price": 50000}], expect=201, line_user_id=U2)
    await world.put_cart(START + hours(2), "anon", [{**ITEM, "price": 9000}], expect=201, browser_id="nobody")
    await world.put_cart(START + hours(3), "gone", [ITEM], expect=201, line_user_id=U1)
    await world.put_cart(START + hours(4), "gone", [], expect=200, line_user_id=U1)

    open_carts = await search(world)
    assert [c["cart_token"] for c in open_carts["items"]] == ["anon", "big", "small"]  # newest activity first
    assert open_carts["next_after"] is None
    assert [c["cart_token"] for c in (await search(world, min_value="5000", max_value="60000"))["items"]] == [
        "anon", "big"]
    assert [c["cart_token"] for c in (await search(world, linked="true"))["items"]] == ["big", "small"]
    assert [c["cart_token"] for c in (await search(world, linked="false"))["items"]] == ["anon"]
    recent = await search(world, active_from=(START + hours(0.5)).isoformat(),
                          active_to=(START + hours(1.5)).isoformat())
    assert [c["cart_token"] for c in recent["items"]] == ["big"]
    assert [c["cart_token"] for c in (await search(world, state="emptied"))["items"]] == ["gone"]
    page1 = await search(world, limit="2")
    page2 = await search(world, limit="2", after=page1["next_after"])
    assert [c["cart_token"] for c in page1["items"] + page2["items"]] == ["anon", "big", "small"]
    bounded = await search(world, limit="1", active_from=(START + hours(0.5)).isoformat())
    rest = await search(world, limit="5", active_from=(START + hours(0.5)).isoformat(), after=bounded["next_after"])
    assert [c["cart_token"] for c in bounded["items"] + rest["items"]] == ["anon", "big"]  # the bound holds on page 2
    row = next(c for c in open_carts["items"] if c["cart_token"] == "big")
    assert row["line_user_id"] == U2 and row["value"] == 50000 and row["abandoned_at"] == "2037-12-01T05:00:00Z"
    for bad, field in (({"min_value": "-1"}, "min_value"), ({"state": "lost"}, "state"),
                       ({"after": "garbage"}, "after"), ({"min_value": "10", "max_value": "5"}, "max_value"),
                       ({"active_from": "2037-12-01T10:00:00"}, "active_from")):
        response = await world.client.get(f"{world.base}/carts", params=bad, headers=world.shop.auth)
        assert response.status == 422 and (await response.json())["error"]["field"] == field, bad


async def test_search_link_and_report_queries_are_planned_on_their_indexes(world: CartWorld) -> None:
    """Unhinted, as the code runs them: each first `$match` has exactly one index's fields, which the planner picks."""
    shop_id = world.shop.shop_id
    carts = world.db["carts"]

    async def aggregate_plan(pipeline: list[dict[str, Any]]) -> Any:
        return await world.db.db.command("explain", {"aggregate": "carts", "pipeline": pipeline, "cursor": {}})

    plans = {
        "shop_state_activity": await aggregate_plan([
            {"$match": {"shop_id": shop_id, "state": "open", "last_activity_at": {"$gte": START, "$lt": START}}},
            {"$match": {"value": {"$gte": 1}, "line_user_id": {"$gt": ""}}},
            {"$sort": {"last_activity_at": -1, "_id": -1}}, {"$limit": 50}]),
        "shop_browser": await carts.find({"shop_id": shop_id, "browser_id": "b"}).explain(),
        "shop_abandoned": await aggregate_plan([
            {"$match": {"shop_id": shop_id, "abandoned_at": {"$gte": START, "$lt": START + hours(1)}}},
            {"$group": {"_id": None, "total": {"$sum": 1}}}]),
    }
    for index, plan in plans.items():
        text = json.dumps(plan, default=str)
        assert "COLLSCAN" not in text and index in text, index


async def test_dry_run_says_what_when_and_why(world: CartWorld) -> None:
    await world.settings(quiet_hours={"enabled": True, "start": "21:00", "end": "09:00"})
    await world.product("p1")
    browser = await world.customer(U1)
    await world.add(START + hours(9), browser, "t1", "p1")  # 19:00 Tokyo: due 22:00, quiet until 09:00
    await world.add(START, "stranger", "t-anon", "p1")

    body = await world.dry_run("t1", START + hours(10))
    assert body["journey"] == "current" and body["now"]["action"] == "wait"
    assert body["now"]["due_at"] == "2037-12-01T13:00:00+00:00"
    then = body["then"]
    assert then["action"] == "send" and then["at"] == "2037-12-02T00:00:00+00:00"  # after the quiet hours
    assert then["messages"][1]["contents"]["type"] == "carousel"
    assert await world.pushes() == [] and (await world.journey(U1))["status"] == "waiting"  # no side effects

    assert (await world.dry_run("t-anon"))["now"]["reason"] == "not_linked"

    await world.run(START + hours(23))
    (push,) = await world.pushes(U1)
    assert push["messages"] == then["messages"] and push["retry_key"] == then["retry_key"]  # the preview is the send
    after = await world.dry_run("t1", START + hours(24))
    assert after["now"]["action"] == "none" and after["now"]["reason"] == "reminded"

    await world.put_cart(START + hours(25), "t2", [{**ITEM, "price": 100}], expect=201, line_user_id=U1)
    cooled = await world.dry_run("t2", START + hours(28))
    assert cooled["now"]["action"] == "skip" and cooled["now"]["reason"] == "cooldown"
    await world.put_cart(START + hours(26), "t2", [], expect=200, line_user_id=U1)
    assert (await world.dry_run("t2"))["now"]["reason"] == "emptied"
    assert RECOVERY.split("?")[0] not in json.dumps(then["messages"])  # the button is our redirect, not the shop's


async def test_search_walks_back_through_older_activity_page_by_page(world: CartWorld) -> None:
    await world.customer(U1)
    now = START + timedelta(days=600)
    ages = [0.5, 3, 20, 100, 300, 500]  # days before now
    for age in ages:
        await world.put_cart(now - timedelta(days=age), f"age-{age}", [ITEM], expect=201, line_user_id=U1)
    world.clock.set(now)
    seen: list[str] = []
    after = None
    while True:
        page = await search(world, limit="2", **({"after": after} if after else {}))
        seen += [c["cart_token"] for c in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == [f"age-{age}" for age in ages[:-1]]  # newest first; older than 400 days only when asked
    old = await search(world, active_from=(now - timedelta(days=700)).isoformat(), limit="10")
    assert [c["cart_token"] for c in old["items"]] == [f"age-{age}" for age in ages]


async def test_a_long_template_stored_before_the_limit_still_reads_and_each_reminder_is_skipped(
        world: CartWorld) -> None:
    """The template limit is 400 on input now (it was 1,000): a longer one stored earlier must not break reading
    the settings or the delivery run of every flow; its reminders are skipped, named, as LINE would refuse them."""
    await world.settings()
    await world.product("p1")
    browser = await world.customer(U1)
    await world.add(START, browser, "long", "p1")
    long = "https://shop.example/" + "x" * 800 + "?t={cart_token}"
    await world.db["shop_settings"].update_one({"_id": settings_key(world.shop.shop_id, "cart")},
                                               {"$set": {"data.recovery_url_template": long}})
    response = await world.client.get(f"{world.base}/settings/cart", headers=world.shop.auth)
    assert response.status == 200 and (await response.json())["recovery_url_template"] == long
    summary = await world.run(START + hours(3))
    assert summary["skipped:recovery_url_too_long"] == 1 and await world.pushes() == []
    response = await world.client.put(f"{world.base}/settings/cart", headers=world.shop.auth,
                                      json={"enabled": True, "recovery_url_template": long})
    assert response.status == 422 and (await response.json())["error"]["field"] == "recovery_url_template"
