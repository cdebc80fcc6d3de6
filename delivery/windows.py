"""When a send may go out: quiet hours and send windows in the shop's time zone, as pure arithmetic.

Never does I/O and never reads a clock: `now` is handed in, so the same
function answers the real run, `run-once --now …` and the dry run. Windows
are computed on the local calendar and converted back through UTC, so they
stay right across midnight, on weekends and on DST nights.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from delivery.flow import Window
from storage.shop_settings import QuietHours


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone)


def _intervals(window: Window, around: date, zone: ZoneInfo) -> Iterator[tuple[datetime, datetime]]:
    """The window's [start, end) intervals starting on the days from `around - 1` to `around + 8` (local)."""
    for offset in range(-1, 9):
        day = around + timedelta(days=offset)
        if not window.quiet and day.weekday() not in window.weekdays:
            continue
        start = _at(day, window.start, zone)
        end_day = day if window.start < window.end else day + timedelta(days=1)
        yield start, _at(end_day, window.end, zone)


def next_allowed(now: datetime, window: Window, timezone: str) -> datetime | None:
    """None when a send may go out at `now`; otherwise the first moment after `now` when it may.

    Quiet hours: the end of the quiet interval containing `now`. A send window: the start of the next
    allowed interval (on an allowed weekday), or None inside one. A window with no weekday never opens:
    None is never returned for it, and the answer is a week ahead (validation refuses such windows).
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    if window.start == window.end:
        return None  # an empty quiet window holds nothing back (validation refuses empty send windows)
    intervals = list(_intervals(window, local.date(), zone))
    if window.quiet:
        for start, end in intervals:
            if start <= now < end:
                return end.astimezone(now.tzinfo)
        return None
    if any(start <= now < end for start, end in intervals):
        return None
    later = [start for start, _ in intervals if start > now]
    return min(later).astimezone(now.tzinfo) if later else now + timedelta(days=7)


def quiet_window(quiet: QuietHours) -> Window | None:
    """A flow's quiet-hours settings as a window the policy applies (None when switched off)."""
    if not quiet.enabled:
        return None
    return Window("quiet_hours", time.fromisoformat(quiet.start), time.fromisoformat(quiet.end), quiet=True)
