"""What a cart becomes after each kind of event (pure, table-tested)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.carts.cart import CartClock, PlatformCart, apply_events, apply_platform, attach_owner, mark_ordered

T0 = datetime(2037, 12, 1, 1, 0, tzinfo=UTC)
CLOCK = CartClock(T0, timedelta(hours=3), {"p1": 1000})


def ev(event_id: str, kind: str = "add_to_cart", at: datetime = T0, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "received_at": at, "browser_id": "b1", "cart_token": "t",
            "product_id": "p1", **fields}


def stored(fields: dict[str, Any] | None, version: int = 1) -> dict[str, Any]:
    assert fields is not None
    return {**fields, "cart_token": "t", "version": version}


def test_adds_merge_lines_value_at_catalogue_or_event_price_and_replays_change_nothing() -> None:
    cart = stored(apply_events(None, [ev("e1", quantity=2), ev("e2", product_id="p2", quantity=1, value=500),
                                      ev("e3", quantity=1, at=T0 + timedelta(minutes=5))], CLOCK))
    assert [(line["product_id"], line["quantity"]) for line in cart["items"]] == [("p1", 3), ("p2", 1)]
    assert cart["value"] == 3 * 1000 + 500
    assert cart["last_activity_at"] == T0 + timedelta(minutes=5)
    assert cart["abandoned_at"] == T0 + timedelta(hours=3, minutes=5)
    assert (cart["state"], cart["stage"], cart["event_ids"]) == ("open", "cart", ["e1", "e2", "e3"])
    assert apply_events(cart, [ev("e2"), ev("e3")], CLOCK) is None


def test_variants_are_separate_lines() -> None:
    cart = apply_events(None, [ev("e1", variant_id="S"), ev("e2", variant_id="M"), ev("e3", variant_id="S")], CLOCK)
    assert cart is not None
    assert [(line["variant_id"], line["quantity"]) for line in cart["items"]] == [("S", 2), ("M", 1)]


def test_checkout_then_purchase_ends_the_cart_for_good() -> None:
    cart = stored(apply_events(None, [ev("e1"), ev("e2", "checkout_started", at=T0 + timedelta(hours=1))], CLOCK))
    assert cart["stage"] == "checkout" and cart["last_activity_at"] == T0 + timedelta(hours=1)
    later = CartClock(T0 + timedelta(hours=2), CLOCK.delay)
    ordered = stored(apply_events(cart, [ev("e3", "purchase", at=later.now, order_id="o1")], later), 2)
    assert (ordered["state"], ordered["order_id"]) == ("ordered", "o1")
    assert ordered["abandoned_at"] is None  # bought before the abandonment moment: never abandoned
    after = apply_events(ordered, [ev("e4", at=later.now)], later)
    assert after is not None and after["state"] == "ordered" and len(after["items"]) == 1  # only the ID is kept


def test_a_purchase_or_order_of_a_cart_never_seen_keeps_it_ordered_so_a_late_add_cannot_reopen_it() -> None:
    bought = stored(apply_events(None, [ev("e1", "purchase", order_id="o1")], CLOCK))
    assert (bought["state"], bought["items"], bought["value"]) == ("ordered", [], 0)
    late = apply_events(bought, [ev("e2")], CLOCK)
    assert late is not None and late["state"] == "ordered" and late["items"] == []
    ordered = stored(mark_ordered(None, "o1", T0, CLOCK))
    assert ordered["state"] == "ordered" and ordered["items"] == []
    assert apply_platform(ordered, PlatformCart([{"product_id": "p1", "quantity": 1, "price": 1}], "cart"),
                          CLOCK) is None


@pytest.mark.parametrize(("ordered_after", "abandoned"), [(timedelta(hours=2), False), (timedelta(hours=5), True)])
def test_an_order_keeps_an_abandonment_that_already_happened(ordered_after: timedelta, abandoned: bool) -> None:
    cart = stored(apply_events(None, [ev("e1")], CLOCK))
    at = T0 + ordered_after
    ordered = mark_ordered(cart, "o1", at, CartClock(at, CLOCK.delay))
    assert ordered is not None and ordered["state"] == "ordered"
    assert ordered["abandoned_at"] == (T0 + timedelta(hours=3) if abandoned else None)
    assert mark_ordered(stored(ordered, 2), "o2", at, CLOCK) is None


def test_the_platform_replaces_the_list_ignores_older_writes_and_retries() -> None:
    items = [{"product_id": "p1", "quantity": 2, "price": 700}]
    first = stored(apply_platform(None, PlatformCart(items, "checkout", "U1", updated_at=T0), CLOCK))
    assert (first["value"], first["stage"], first["state"], first["line_user_id"]) == (1400, "checkout", "open", "U1")
    assert apply_platform(first, PlatformCart(items, "checkout", "U1", updated_at=T0), CLOCK) is None  # a retry
    assert apply_platform(first, PlatformCart([], "cart", updated_at=T0 - timedelta(seconds=1)), CLOCK) is None
    later = CartClock(T0 + timedelta(hours=1), CLOCK.delay)
    emptied = apply_platform(first, PlatformCart([], "cart", updated_at=later.now), later)
    assert emptied is not None and emptied["state"] == "emptied" and emptied["abandoned_at"] is None
    assert emptied["line_user_id"] == "U1"  # an owner is never forgotten
    future = apply_platform(None, PlatformCart(items, "cart", updated_at=T0 + timedelta(days=3)), CLOCK)
    assert future is not None and future["last_activity_at"] == T0  # a platform clock ahead of ours is clamped


def test_owner_attaches_only_to_open_carts() -> None:
    cart = stored(apply_events(None, [ev("e1")], CLOCK))
    assert attach_owner(cart, "U1") == {"line_user_id": "U1"}
    assert attach_owner({**cart, "line_user_id": "U1"}, "U1") is None
    assert attach_owner({**cart, "state": "ordered"}, "U1") is None
