"""Due steps: pure arithmetic, table-tested (quiet hours: tests/delivery/test_windows.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.reminders.timing import due_steps

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
