"""Carts at ingest: replays, concurrent events, reordered platform writes, crashes between writes."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

from flows.carts.cart import CartClock, PlatformCart, apply_events, apply_platform
from storage.carts import CartRepository
from tests.conftest import START
from tests.flows.carts.conftest import CartWorld, hours, user
from tests.linking.conftest import SHOP_ORIGIN, post_events

U1 = user(1)


async def test_replayed_and_concurrent_events_count_each_add_once(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    browser = await world.customer(U1)
    world.clock.set(START)
    adds = [{"event_id": f"e{i}", "browser_id": browser, "type": "add_to_cart", "url": f"{SHOP_ORIGIN}/p1",
             "cart_token": "c", "product_id": "p1", "quantity": 1} for i in range(8)]
    # Eight requests at once (one cart: the version check serialises them), then every beacon retried.
    statuses = await asyncio.gather(*(post_events(world.client, world.shop.shop_id, [add]) for add in adds))
    assert [r.status for r in statuses] == [204] * 8
    assert (await post_events(world.client, world.shop.shop_id, adds[:5])).status == 204
    cart = await world.cart("c")
    assert cart["items"] == [{"product_id": "p1", "variant_id": None, "quantity": 8, "price": None, "title": None,
                              "image_url": None}]
    assert cart["value"] == 8 * 12800  # valued at the catalogue price: the events brought none
    assert (await world.journey(U1))["line_count"] == 1


async def test_platform_writes_arriving_out_of_order_and_retries_change_nothing(world: CartWorld) -> None:
    await world.settings()
    await world.customer(U1)
    newer = [{"product_id": "p1", "quantity": 2, "price": 1000}]
    older = [{"product_id": "p1", "quantity": 1, "price": 1000}]
    at = (START + hours(1)).isoformat()
    await world.put_cart(START + hours(1), "t", newer, expect=201, line_user_id=U1, updated_at=at)
    status, cart = await world.put_cart(START + hours(2), "t", older, line_user_id=U1,
                                        updated_at=START.isoformat())
    assert status == 200 and cart["items"][0]["quantity"] == 2  # the older state lost
    before = await world.db["carts"].find_one({"cart_token": "t"})
    status, cart = await world.put_cart(START + hours(2), "t", newer, line_user_id=U1, updated_at=at)  # a retry
    after = await world.db["carts"].find_one({"cart_token": "t"})
    assert before is not None and after is not None
    assert status == 200 and after["version"] == before["version"] == 1
    assert cart["last_activity_at"] == "2037-12-01T02:00:00Z"  # a retry is not an activity
    assert (await world.journey(U1))["due_at"] is not None


async def test_the_outbox_finishes_what_a_crash_left_half_done(world: CartWorld) -> None:
    """The events were stored and their intent written; the process died after writing the cart but before the
    journey. The worker's outbox drain re-runs the listeners: the journey is armed, the cart counted once."""
    await world.settings()
    await world.product("p1")
    browser = await world.customer(U1)
    event: dict[str, Any] = {"_id": f"{world.shop.shop_id}:x1", "event_id": "x1", "shop_id": world.shop.shop_id,
                             "browser_id": browser, "type": "add_to_cart", "url": f"{SHOP_ORIGIN}/p1",
                             "cart_token": "crash", "product_id": "p1", "quantity": 2, "value": 2000,
                             "received_at": START, "line_user_id": U1}
    db = world.db
    await db.signals.browser_events.intend(db, world.shop.shop_id, [event], START, now=START)
    await CartRepository(db).change(world.shop.shop_id, "crash",
                                    lambda c: apply_events(c, [event], CartClock(START, timedelta(hours=3))), START)
    assert await world.journey(U1) == {}  # died here
    summary = await db.signals.drain(db, START + timedelta(minutes=2))
    assert summary["redelivered"] == 1
    cart = await world.cart("crash")
    assert cart["items"][0]["quantity"] == 2 and cart["value"] == 2000
    journey = await world.journey(U1)
    assert journey["status"] == "waiting" and journey["token"] == "crash"
    assert (await world.run(START + hours(3)))["sent"] == 1


async def test_tracking_rejects_bad_cart_events_and_changes_nothing(world: CartWorld) -> None:
    await world.settings()
    browser = await world.customer(U1)
    world.clock.set(START)
    for bad in ({"quantity": 0}, {"quantity": 10_001}, {"value": -1}, {"variant_id": "bad variant"}):
        body = {"event_id": secrets.token_hex(4), "browser_id": browser, "type": "add_to_cart",
                "url": f"{SHOP_ORIGIN}/p", "cart_token": "t", "product_id": "p1", **bad}
        response = await post_events(world.client, world.shop.shop_id, body)
        assert response.status == 422, bad
        assert (await response.json())["error"]["field"] == next(iter(bad))
    assert await world.db["carts"].count_documents({}) == 0


async def test_a_platform_retry_after_a_crash_between_the_cart_and_the_journey_repairs_the_journey(
        world: CartWorld) -> None:
    await world.settings()
    await world.customer(U1)
    items = [{"product_id": "p1", "quantity": 1, "price": 4000}]
    # The first request wrote the cart and died before the journey (its client got no answer) ...
    update = PlatformCart(items, "cart", U1, updated_at=START)
    await CartRepository(world.db).change(world.shop.shop_id, "r", lambda c: apply_platform(
        c, update, CartClock(START, timedelta(hours=3))), START)
    assert await world.journey(U1) == {}
    # ... so the platform sends it again: the cart is unchanged, the journey is armed.
    status, cart = await world.put_cart(START + timedelta(seconds=5), "r", items, line_user_id=U1,
                                        updated_at=START.isoformat())
    assert status == 200 and cart["last_activity_at"] == "2037-12-01T01:00:00Z"
    journey = await world.journey(U1)
    assert journey["status"] == "waiting" and journey["due_at"] == START + hours(3)
