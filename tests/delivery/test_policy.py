"""The delivery policy and the lift statistics: pure functions, table-tested and simulated."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from delivery.flow import Intent, Window
from delivery.policy import DeliveryPolicy, cap_allows_at, decide, in_holdout
from delivery.stats import lift, wilson

NOW = datetime(2037, 12, 4, 3, 0, tzinfo=UTC)  # Friday 12:00 in Tokyo
FRIEND = {"friend": True, "blocked": False, "opted_out": False}
QUIET = Window("quiet_hours", time(21), time(9))


def send(flow: str = "reminders", **fields: Any) -> Intent:
    return Intent(flow=flow, state_key=flow, kind="send", state={"due_at": None}, step=1, key=f"k-{flow}",
                  messages=[{"type": "text", "text": "hi"}], **fields)


def verdicts(intents: list[Intent], *, customer: dict[str, Any] | None = None, sent: list[datetime] | None = None,
             policy: DeliveryPolicy | None = None, now: datetime = NOW) -> list[tuple[str, str | None]]:
    found = decide("shop", "U1", FRIEND if customer is None else customer, sent or [], intents,
                   policy or DeliveryPolicy(), "Asia/Tokyo", now)
    return [(v.action, v.reason) for v in found]


@pytest.mark.parametrize(("customer", "reason"), [
    ({**FRIEND, "blocked": True}, "blocked"), ({**FRIEND, "opted_out": True}, "opted_out"),
    ({**FRIEND, "friend": False}, "not_friend"),
])
def test_unreachable_customers_are_dropped_and_their_reason_wins_over_a_flow_skip(customer: dict[str, Any],
                                                                                   reason: str) -> None:
    skip = Intent(flow="reminders", state_key="reminders", kind="skip", state={}, reason="no_products", key="k")
    assert verdicts([send(), skip], customer=customer) == [("drop", reason), ("skip", reason)]


def test_a_missing_customer_is_never_sent_to() -> None:
    assert decide("shop", "U1", None, [], [send()], DeliveryPolicy(), "Asia/Tokyo", NOW)[0].action == "drop"


@pytest.mark.parametrize(("local", "expected"), [
    ("2037-12-04T12:00:00+09:00", ("send", None, None)),
    ("2037-12-04T22:30:00+09:00", ("defer", "quiet_hours", "2037-12-05T09:00:00+09:00")),  # across midnight
    ("2037-12-05T02:00:00+09:00", ("defer", "quiet_hours", "2037-12-05T09:00:00+09:00")),
])
def test_quiet_hours_defer_to_the_window_end(local: str, expected: tuple[str, str | None, str | None]) -> None:
    now = datetime.fromisoformat(local).astimezone(UTC)
    (verdict,) = decide("shop", "U1", FRIEND, [], [send(window=QUIET)], DeliveryPolicy(), "Asia/Tokyo", now)
    until = datetime.fromisoformat(expected[2]).astimezone(UTC) if expected[2] else None
    assert (verdict.action, verdict.reason, verdict.until) == (expected[0], expected[1], until)


def test_a_weekday_window_defers_a_saturday_send_to_monday() -> None:
    weekdays = Window("send_window", time(9), time(18), quiet=False, weekdays=frozenset(range(5)))
    saturday = datetime(2037, 12, 5, 3, 0, tzinfo=UTC)
    (verdict,) = decide("shop", "U1", FRIEND, [], [send(window=weekdays)], DeliveryPolicy(), "Asia/Tokyo", saturday)
    assert verdict.action == "defer" and verdict.until == datetime(2037, 12, 7, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("sent_hours_ago", "per_day", "per_week", "allowed_in_hours"), [
    ([], 1, None, 0),
    ([3], 1, None, 21),  # the one send of the day leaves the 24 hours in 21 hours
    ([3, 30], 2, None, 0),  # only one in the last 24 hours
    ([1, 2], 2, None, 22),  # the older of the two leaves first
    ([24 * d + 1 for d in range(3)], None, 3, 24 * 7 - (24 * 2 + 1)),
    ([1], 3, 1, 24 * 7 - 1),  # the weekly cap binds
])
def test_cap_allows_at(sent_hours_ago: list[int], per_day: int | None, per_week: int | None,
                       allowed_in_hours: int) -> None:
    sent = [NOW - timedelta(hours=h) for h in sent_hours_ago]
    assert cap_allows_at(sent, NOW, DeliveryPolicy(per_day, per_week)) == NOW + timedelta(hours=allowed_in_hours)


def test_the_cap_spans_flows_and_defers_or_drops_per_flow() -> None:
    capped = DeliveryPolicy(per_day=1)
    # Two flows due at once: the earlier-due one goes, the other waits for the cap (or is dropped when stale).
    cart = send("cart", due_at=NOW - timedelta(hours=2))
    reminder = send("reminders", due_at=NOW - timedelta(hours=1))
    assert verdicts([reminder, cart], policy=capped) == [("defer", "frequency_cap"), ("send", None)]
    stale = send("reminders", due_at=NOW - timedelta(hours=1), stale_after=NOW + timedelta(hours=2))
    assert verdicts([stale, cart], policy=capped) == [("drop", "frequency_cap"), ("send", None)]
    # A send by another flow earlier today counts too.
    assert verdicts([send("sequences")], policy=capped, sent=[NOW - timedelta(hours=5)]) == [("defer", "frequency_cap")]


def test_holdout_is_stable_and_its_share_is_within_one_point_over_100000_customers() -> None:
    held = sum(in_holdout("shop", "reminders", f"U{i:032x}", 10) for i in range(100_000))
    assert abs(held / 100_000 - 0.10) <= 0.01
    assert in_holdout("shop", "reminders", "U1", 10) == in_holdout("shop", "reminders", "U1", 10)
    assert not any(in_holdout("shop", "reminders", f"U{i}", 0) for i in range(1000))
    # per flow: a customer held out of one flow is not thereby held out of another
    both = sum(in_holdout("shop", "reminders", f"U{i}", 50) and in_holdout("shop", "cart", f"U{i}", 50)
               for i in range(10_000))
    assert 2000 <= both <= 3000


def test_held_customers_are_recorded_not_sent_after_window_and_cap() -> None:
    policy = DeliveryPolicy(holdout_percent=50)
    users = [f"U{i}" for i in range(200)]
    actions = {decide("shop", u, FRIEND, [], [send()], policy, "Asia/Tokyo", NOW)[0].action for u in users}
    assert actions == {"send", "hold"}
    night = datetime(2037, 12, 4, 14, 0, tzinfo=UTC)  # 23:00 Tokyo: everyone waits, held or not
    assert {decide("shop", u, FRIEND, [], [send(window=QUIET)], policy, "Asia/Tokyo", night)[0].action
            for u in users} == {"defer"}


def test_wilson_interval_is_inside_zero_one() -> None:
    assert wilson(0, 10)[0] == 0.0 and 0 < wilson(0, 10)[1] < 0.4
    low, high = wilson(50, 100)
    assert low < 0.5 < high


def test_lift_interval_covers_the_true_lift_in_at_least_90_percent_of_200_runs() -> None:
    rng = random.Random(20371204)
    covered = 0
    true_treated, true_holdout = 0.06, 0.04
    for _ in range(200):
        treated, holdout = 2000, 300
        conv_t = sum(rng.random() < true_treated for _ in range(treated))
        conv_h = sum(rng.random() < true_holdout for _ in range(holdout))
        measured = lift(conv_t, treated, conv_h, holdout)
        assert measured is not None
        covered += measured.low <= true_treated - true_holdout <= measured.high
    assert covered >= 180


def test_no_lift_without_a_holdout() -> None:
    assert lift(10, 100, 0, 0) is None
