"""Due steps and quiet hours: pure arithmetic, table-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.reminders.timing import due_steps, quiet_until

ANCHOR = datetime(2037, 12, 1, 1, 0, tzinfo=UTC)
DELAYS = [3, 7, 14]


@pytest.mark.parametrize(
    ("next_step", "after", "send", "superseded", "next_due_days"),
    [
        (0, timedelta(days=2, hours=23), None, (), 3),  # not due yet
        (0, timedelta(days=3), 0, (), None),  # exactly due
        (1, timedelta(days=3, minutes=1), None, (), 7),  # step 1 sent, step 2 waits
        (0, timedelta(days=8), 1, (0,), None),  # linked late: only the latest overdue step
        (0, timedelta(days=30), 2, (0, 1), None),
        (3, timedelta(days=30), None, (), None),  # all done
    ],
)
def test_due_steps(next_step: int, after: timedelta, send: int | None, superseded: tuple[int, ...],
                   next_due_days: int | None) -> None:
    due = due_steps(ANCHOR, DELAYS, next_step, ANCHOR + after)
    assert due.send == send
    assert due.superseded == superseded
    assert due.next_due_at == (ANCHOR + timedelta(days=next_due_days) if next_due_days else None)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


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
    result = quiet_until(utc(now), start, end, zone)
    assert result == (utc(until) if until else None)
