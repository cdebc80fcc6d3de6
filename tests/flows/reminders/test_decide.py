"""The per-customer rules of the flow: stop, suppress, skip with a reason, send (the policy: tests/delivery)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flows.reminders.choice import Candidates, ViewStat
from flows.reminders.decide import CustomerFacts, Decision, decide
from storage.shop_settings import QuietHours, ReminderSettings

ANCHOR = datetime(2037, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 Tokyo
DAY = timedelta(days=1)
PRODUCTS = {"p1": {"product_id": "p1", "published": True, "track_inventory": True, "continue_selling": False,
                   "total_stock": 5}}
VIEWS = [ViewStat("p1", 2, ANCHOR)]


def customer(**fields: Any) -> dict[str, Any]:
    reminder = {"status": "active", "cycle_id": "c1", "cycle_started_at": ANCHOR, "next_step": 0, "steps_sent": []}
    reminder.update(fields.pop("reminder", {}))
    return {"shop_id": "s", "line_user_id": "U1", "friend": True, "blocked": False, "opted_out": False,
            "linked": True, "totals": {}, "reminder": reminder, **fields}  # `reminder`: the contact's sub-state


def run(cust: dict[str, Any], now: datetime, orders: list[dict[str, Any]] | None = None,
        settings: ReminderSettings | None = None, views: list[ViewStat] = VIEWS) -> Decision:
    """`orders` (paid) become what ingest keeps: `totals.last_purchase_at` and the profile's `bought`."""
    settings = settings or ReminderSettings(enabled=True, quiet_hours=QuietHours(enabled=False))
    bought: dict[str, datetime] = {}
    for order in orders or []:
        cust.setdefault("totals", {})
        last = cust["totals"].get("last_purchase_at")
        cust["totals"]["last_purchase_at"] = max(last, order["ordered_at"]) if last else order["ordered_at"]
        for item in order.get("items") or []:
            bought[item["product_id"]] = max(bought.get(item["product_id"], order["ordered_at"]), order["ordered_at"])
    return decide(CustomerFacts(cust, cust["reminder"], views, bought), settings, PRODUCTS, Candidates(), now)


def test_send_first_step_and_advance() -> None:
    d = run(customer(), ANCHOR + 3 * DAY)
    assert d.kind == "send" and d.step == 0 and d.choice is not None
    assert [s.product_id for s in d.choice.shown] == ["p1"]
    assert d.state["next_step"] == 1 and d.state["due_at"] == ANCHOR + 7 * DAY and d.state["status"] == "active"


def test_last_step_completes_cycle() -> None:
    d = run(customer(reminder={"next_step": 2, "steps_sent": [0, 1]}), ANCHOR + 14 * DAY)
    assert d.kind == "send" and d.step == 2 and d.state["status"] == "done" and d.state["due_at"] is None


def test_not_due_waits() -> None:
    d = run(customer(), ANCHOR + 2 * DAY)
    assert d.kind == "wait" and d.state == {"due_at": ANCHOR + 3 * DAY}


def test_purchase_after_start_stops() -> None:
    d = run(customer(), ANCHOR + 3 * DAY, orders=[{"ordered_at": ANCHOR + DAY, "items": []}])
    assert d.kind == "stop" and d.state["status"] == "stopped"


def test_recent_purchase_before_start_skips() -> None:
    d = run(customer(), ANCHOR + 3 * DAY, orders=[{"ordered_at": ANCHOR - 5 * DAY, "items": [{"product_id": "x"}]}])
    assert (d.kind, d.reason, d.step) == ("skip", "recent_purchase", 0)
    assert d.state["next_step"] == 1


def test_old_purchase_only_excludes_the_product() -> None:
    d = run(customer(), ANCHOR + 3 * DAY, orders=[{"ordered_at": ANCHOR - 30 * DAY, "items": [{"product_id": "p1"}]}])
    assert (d.kind, d.reason) == ("skip", "no_products")
    assert d.choice is not None and d.choice.excluded[0].reason == "bought_recently"


def test_not_linked_skips() -> None:
    d = run(customer(linked=False), ANCHOR + 3 * DAY)
    assert (d.kind, d.reason) == ("skip", "not_linked")


def test_reachability_and_quiet_hours_are_left_to_the_policy() -> None:
    """Blocked or at night, the flow still says "send": the delivery policy drops or defers it."""
    night = datetime(2037, 12, 4, 14, 0, tzinfo=UTC)  # 23:00 Tokyo, step 1 due since 10:00
    d = run(customer(blocked=True), night, settings=ReminderSettings(enabled=True))
    assert d.kind == "send" and d.step == 0


def test_linked_late_sends_only_latest_step() -> None:
    d = run(customer(), ANCHOR + 8 * DAY)
    assert d.kind == "send" and d.step == 1 and d.superseded == (0,)
    assert d.state["steps_sent"] == [0, 1]


def test_disabled_ends_cycle_and_inactive_clears() -> None:
    assert run(customer(), ANCHOR + 3 * DAY, settings=ReminderSettings(enabled=False)).kind == "disabled"
    assert run(customer(reminder={"status": "done"}), ANCHOR + 3 * DAY).kind == "inactive"
