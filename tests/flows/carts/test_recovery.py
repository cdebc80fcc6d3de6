"""Which order recovers which cart reminder (pure, table-tested)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flows.carts.recovery import recovered_by

T0 = datetime(2037, 12, 1, 1, 0, tzinfo=UTC)
WINDOW = timedelta(days=7)


def record(token: str, at: datetime, status: str = "sent") -> dict[str, Any]:
    return {"flow": "cart", "cycle": token, "key": f"k-{token}", "status": status, "at": at,
            "sent_at": at if status == "sent" else None}


def order(at: datetime, token: str | None = None) -> dict[str, Any]:
    return {"shop_id": "s", "order_id": "o", "line_user_id": "U1", "ordered_at": at, "cart_token": token}


def test_the_cart_token_recovers_whatever_the_window_and_without_a_click() -> None:
    a, b = record("A", T0), record("B", T0 + timedelta(days=1))
    assert recovered_by(order(T0 + timedelta(days=30), "A"), [a, b], WINDOW, {}) == a


def test_without_the_token_only_a_click_before_the_order_within_the_window_recovers() -> None:
    a = record("A", T0)
    clicked = {"k-A": T0 + timedelta(hours=1)}
    assert recovered_by(order(T0 + timedelta(hours=2)), [a], WINDOW, clicked) == a
    assert recovered_by(order(T0 + timedelta(hours=2)), [a], WINDOW, {}) is None
    assert recovered_by(order(T0 + timedelta(minutes=30)), [a], WINDOW, clicked) is None  # clicked after ordering
    assert recovered_by(order(T0 + timedelta(days=8)), [a], WINDOW, clicked) is None  # outside the window
    assert recovered_by(order(T0 + timedelta(hours=2), "unknown"), [a], WINDOW, clicked) == a


def test_a_held_record_stands_in_for_the_click_and_skips_never_count() -> None:
    held = record("H", T0, "held")
    assert recovered_by(order(T0 + timedelta(days=1)), [held], WINDOW, {}) == held
    assert recovered_by(order(T0 + timedelta(days=1), "S"), [record("S", T0, "skipped")], WINDOW, {}) is None
    assert recovered_by(order(T0 - timedelta(hours=1), "A"), [record("A", T0)], WINDOW, {}) is None  # before it
