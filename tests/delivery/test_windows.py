"""Quiet hours and send windows: pure arithmetic in the shop's time zone, table-tested."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from delivery.flow import Window
from delivery.windows import next_allowed, quiet_window
from storage.shop_settings import QuietHours


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def quiet(start: str, end: str) -> Window:
    return Window("quiet_hours", time.fromisoformat(start), time.fromisoformat(end), quiet=True)


def window(start: str, end: str, days: str = "mon tue wed thu fri sat sun") -> Window:
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    return Window("send_window", time.fromisoformat(start), time.fromisoformat(end), quiet=False,
                  weekdays=frozenset(names.index(d) for d in days.split()))


@pytest.mark.parametrize(
    ("now", "start", "end", "zone", "until"),
    [
        ("2037-12-01T10:00:00+09:00", "21:00", "09:00", "Asia/Tokyo", None),
        ("2037-12-01T21:00:00+09:00", "21:00", "09:00", "Asia/Tokyo", "2037-12-02T09:00:00+09:00"),
        ("2037-12-01T23:59:00+09:00", "21:00", "09:00", "Asia/Tokyo", "2037-12-02T09:00:00+09:00"),
        ("2037-12-02T03:00:00+09:00", "21:00", "09:00", "Asia/Tokyo", "2037-12-02T09:00:00+09:00"),
        ("2037-12-02T09:00:00+09:00", "21:00", "09:00", "Asia/Tokyo", None),  # the end is outside
        ("2037-12-01T13:00:00+09:00", "12:00", "14:00", "Asia/Tokyo", "2037-12-01T14:00:00+09:00"),
        ("2037-12-01T11:59:00+09:00", "12:00", "14:00", "Asia/Tokyo", None),
        # New York, the night DST ends (2037-11-01): the window end is 09:00 local, EST.
        ("2037-10-31T22:00:00-04:00", "21:00", "09:00", "America/New_York", "2037-11-01T09:00:00-05:00"),
        # New York, the night DST starts (2037-03-08).
        ("2037-03-07T23:00:00-05:00", "21:00", "09:00", "America/New_York", "2037-03-08T09:00:00-04:00"),
        ("2037-12-01T12:30:00+00:00", "21:00", "09:00", "UTC", None),
    ],
)
def test_quiet_hours(now: str, start: str, end: str, zone: str, until: str | None) -> None:
    assert next_allowed(utc(now), quiet(start, end), zone) == (utc(until) if until else None)


# 2037-12-04 is a Friday, 2037-12-05 a Saturday, 2037-12-07 a Monday (Tokyo).
@pytest.mark.parametrize(
    ("now", "spec", "until"),
    [
        ("2037-12-04T10:00:00+09:00", ("09:00", "21:00", "mon tue wed thu fri"), None),  # inside, a weekday
        ("2037-12-04T21:00:00+09:00", ("09:00", "21:00", "mon tue wed thu fri"), "2037-12-07T09:00:00+09:00"),
        ("2037-12-05T12:00:00+09:00", ("09:00", "21:00", "mon tue wed thu fri"), "2037-12-07T09:00:00+09:00"),
        ("2037-12-05T12:00:00+09:00", ("09:00", "21:00", "sat sun"), None),  # weekends only
        ("2037-12-04T12:00:00+09:00", ("09:00", "21:00", "sat sun"), "2037-12-05T09:00:00+09:00"),
        ("2037-12-04T08:59:00+09:00", ("09:00", "21:00", "fri"), "2037-12-04T09:00:00+09:00"),
        # across midnight: a Friday-night window 22:00-02:00 still holds at 01:00 on Saturday
        ("2037-12-05T01:00:00+09:00", ("22:00", "02:00", "fri"), None),
        ("2037-12-05T02:00:00+09:00", ("22:00", "02:00", "fri"), "2037-12-11T22:00:00+09:00"),
        ("2037-12-04T20:00:00+09:00", ("22:00", "02:00", "fri"), "2037-12-04T22:00:00+09:00"),
        # a wait that ends after the day's window closed moves to the next open day
        ("2037-12-04T20:30:00+09:00", ("10:00", "12:00", "mon tue wed thu fri sat sun"), "2037-12-05T10:00:00+09:00"),
    ],
)
def test_send_windows(now: str, spec: tuple[str, str, str], until: str | None) -> None:
    assert next_allowed(utc(now), window(*spec), "Asia/Tokyo") == (utc(until) if until else None)


def test_quiet_hours_settings_become_a_window_only_when_on() -> None:
    assert quiet_window(QuietHours(enabled=False)) is None
    made = quiet_window(QuietHours(start="22:00", end="08:00"))
    assert made is not None and made.quiet and (made.start, made.end) == (time(22), time(8))
