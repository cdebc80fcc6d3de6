"""The cart journey's decision at send time (pure, table-tested)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.carts.journey import Facts, arm, decide, last_reminder
from storage.shop_settings import CartSettings

T0 = datetime(2037, 12, 1, 1, 0, tzinfo=UTC)
ON = CartSettings(enabled=True, delay_hours=3, recovery_url_template="https://s.example/c/{cart_token}")
LINE = {"product_id": "p1", "quantity": 1, "price": 100}


def waiting(**fields: Any) -> dict[str, Any]:
    return {"token": "t", "status": "waiting", "last_activity_at": T0, "items": [LINE], "line_count": 1,
            "due_at": T0 + timedelta(hours=3), **fields}


def customer(bought: datetime | None = None) -> dict[str, Any]:
    return {"friend": True, "totals": {"last_purchase_at": bought}}


def cart_record(token: str, at: datetime, status: str = "sent") -> dict[str, Any]:
    return {"flow": "cart", "cycle": token, "status": status, "at": at, "sent_at": at if status == "sent" else None}


NOW = T0 + timedelta(hours=3)


@pytest.mark.parametrize(("facts", "settings", "now", "kind", "reason"), [
    (Facts(waiting(), customer()), ON, NOW - timedelta(minutes=1), "wait", None),
    (Facts(waiting(), customer()), ON, NOW, "send", None),
    (Facts(waiting(), customer()), CartSettings(), NOW, "end", "disabled"),
    (Facts(waiting(status="reminded"), customer()), ON, NOW, "end", "reminded"),
    (Facts(waiting(status="ended", reason="emptied"), customer()), ON, NOW, "end", "emptied"),
    (Facts(waiting(), customer(bought=T0 + timedelta(hours=1))), ON, NOW, "end", "purchased"),
    (Facts(waiting(), customer(bought=T0 - timedelta(hours=1))), ON, NOW, "send", None),
    (Facts(waiting(handled=["t"]), customer()), ON, NOW, "end", "already_reminded"),
    (Facts(waiting(), customer(), log=[cart_record("t", T0 - timedelta(days=9))]), ON, NOW, "end",
     "already_reminded"),
    (Facts(waiting(items=[]), customer()), ON, NOW, "skip", "no_items"),
    (Facts(waiting(), customer(), log=[cart_record("other", T0 - timedelta(days=2))]), ON, NOW, "skip", "cooldown"),
    (Facts(waiting(), customer(), log=[cart_record("other", T0 - timedelta(days=2), "held")]), ON, NOW, "skip",
     "cooldown"),
    (Facts(waiting(), customer(), log=[cart_record("other", T0 - timedelta(days=2), "skipped")]), ON, NOW, "send",
     None),
    (Facts(waiting(), customer(), sent=[{"at": T0 - timedelta(days=2), "flow": "cart"}]), ON, NOW, "skip",
     "cooldown"),
    (Facts(waiting(), customer(), sent=[{"at": T0 - timedelta(days=2), "flow": "reminders"}]), ON, NOW, "send",
     None),
    (Facts(waiting(), customer(), log=[cart_record("other", T0 - timedelta(days=3, hours=1))]), ON, NOW, "send",
     None),
    (Facts(waiting(), customer(), log=[cart_record("other", T0 - timedelta(days=2))]),
     ON.model_copy(update={"cooldown_days": 0}), NOW, "send", None),
])
def test_decide(facts: Facts, settings: CartSettings, now: datetime, kind: str, reason: str | None) -> None:
    decision = decide(facts, settings, now)
    assert (decision.kind, decision.reason) == (kind, reason)
    assert "due_at" in decision.state


def test_a_send_marks_the_cart_handled_and_goes_stale_two_days_after_due() -> None:
    decision = decide(Facts(waiting(handled=["a", "b"]), customer()), ON, NOW)
    assert decision.state["status"] == "reminded" and decision.state["handled"] == ["a", "b", "t"]
    assert decision.due_at == NOW and decision.stale_after == NOW + timedelta(days=2)


def test_the_latest_reminder_counts_sent_and_held_records() -> None:
    log = [cart_record("a", T0), cart_record("b", T0 + timedelta(days=1), "held"),
           cart_record("c", T0 + timedelta(days=2), "skipped"), {"flow": "reminders", "status": "sent",
                                                                   "at": T0 + timedelta(days=3)}]
    assert last_reminder(log, []) == T0 + timedelta(days=1)


def test_arm_only_open_carts_with_an_owner_and_items() -> None:
    cart = {"cart_token": "t", "state": "open", "items": [LINE], "line_user_id": "U1", "last_activity_at": T0,
            "value": 100, "version": 4, "stage": "checkout"}
    write = arm(cart, ON, T0)
    assert write is not None and write.create and write.due_at == T0 + timedelta(hours=3)
    assert write.fields["status"] == "waiting" and write.fields["cart_v"] == 4 and write.fields["stage"] == "checkout"
    assert arm({**cart, "line_user_id": None}, ON, T0) is None
    for state, reason in (("ordered", "ordered"), ("emptied", "emptied")):
        ended = arm({**cart, "state": state}, ON, T0)
        assert ended is not None and not ended.create and ended.fields["reason"] == reason
    disabled = arm(cart, CartSettings(), T0)
    assert disabled is not None and disabled.fields["reason"] == "disabled" and disabled.due_at is None
