"""When a step goes out: its wait, then the send window (weekdays and hours, shop time) — table-tested.

2037-12-04 is a Friday, 2037-12-05 a Saturday, 2037-12-07 a Monday (Tokyo).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.sequences.definition import SendWindow, Step
from flows.sequences.timing import send_moment, send_window, step_due

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
EVERY_DAY = [*WEEKDAYS, "sat", "sun"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def step(wait_minutes: int) -> Step:
    return Step(wait_minutes=wait_minutes, messages=[{"type": "text", "text": "x"}])


@pytest.mark.parametrize(
    ("anchor", "wait", "window", "expected"),
    [
        # no window: the wait alone
        ("2037-12-04T23:30:00+09:00", 60, None, "2037-12-05T00:30:00+09:00"),
        # inside the window on a weekday: at once
        ("2037-12-04T10:00:00+09:00", 30, (WEEKDAYS, "09:00", "21:00"), "2037-12-04T10:30:00+09:00"),
        # the window closes before the wait ends: the next day's opening
        ("2037-12-03T20:00:00+09:00", 90, (WEEKDAYS, "09:00", "21:00"), "2037-12-04T09:00:00+09:00"),
        # …and on a Friday evening the next opening is Monday's
        ("2037-12-04T20:00:00+09:00", 90, (WEEKDAYS, "09:00", "21:00"), "2037-12-07T09:00:00+09:00"),
        # a wait that ends on the weekend moves to Monday
        ("2037-12-04T12:00:00+09:00", 24 * 60, (WEEKDAYS, "09:00", "21:00"), "2037-12-07T09:00:00+09:00"),
        # a weekend-only window: Friday's due time waits for Saturday
        ("2037-12-04T12:00:00+09:00", 60, (["sat", "sun"], "10:00", "18:00"), "2037-12-05T10:00:00+09:00"),
        # the exact end of the window is outside it
        ("2037-12-04T20:00:00+09:00", 60, (EVERY_DAY, "09:00", "21:00"), "2037-12-05T09:00:00+09:00"),
        # the exact start is inside
        ("2037-12-04T08:00:00+09:00", 60, (EVERY_DAY, "09:00", "21:00"), "2037-12-04T09:00:00+09:00"),
        # across midnight: a Friday 22:00-02:00 window is still open at 01:30 on Saturday…
        ("2037-12-04T23:30:00+09:00", 120, (["fri"], "22:00", "02:00"), "2037-12-05T01:30:00+09:00"),
        # …but closed at 02:30, and the next Friday night is a week away
        ("2037-12-04T23:30:00+09:00", 180, (["fri"], "22:00", "02:00"), "2037-12-11T22:00:00+09:00"),
        # a night window on every day: a 15:00 due time waits for 22:00
        ("2037-12-04T14:00:00+09:00", 60, (EVERY_DAY, "22:00", "02:00"), "2037-12-04T22:00:00+09:00"),
        # the longest wait (90 days) from a Monday lands on a Sunday in March: the next Monday's opening
        ("2037-12-07T10:00:00+09:00", 90 * 24 * 60, (WEEKDAYS, "09:00", "21:00"), "2038-03-08T09:00:00+09:00"),
    ],
)
def test_send_moment(anchor: str, wait: int, window: tuple[list[str], str, str] | None, expected: str) -> None:
    made = SendWindow.model_validate({"weekdays": window[0], "start": window[1], "end": window[2]}) \
        if window else None
    assert send_moment(utc(anchor), step(wait), made, "Asia/Tokyo") == utc(expected)


def test_the_window_in_another_time_zone_is_the_shops_local_time() -> None:
    window = SendWindow(weekdays=["mon"], start="09:00", end="10:00")
    # Sunday 23:00 in New York is Monday 13:00 in Tokyo: outside a Tokyo window, inside none in New York.
    anchor = utc("2037-12-06T23:00:00-05:00")
    assert send_moment(anchor, step(1), window, "America/New_York") == utc("2037-12-07T09:00:00-05:00")
    assert send_moment(anchor, step(1), window, "Asia/Tokyo") == utc("2037-12-14T09:00:00+09:00")


def test_a_window_names_its_weekdays_and_the_wait_counts_in_minutes() -> None:
    made = send_window(SendWindow(weekdays=["sat", "mon"], start="21:00", end="03:00"))
    assert made is not None and not made.quiet and made.weekdays == frozenset({0, 5}) and made.reason == "send_window"
    assert send_window(None) is None
    assert step_due(utc("2037-12-04T10:00:00+09:00"), step(50 * 60)) == utc("2037-12-06T12:00:00+09:00")
