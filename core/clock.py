"""Injected time: every component asks a clock, never `datetime.now()` directly.

Tests and `scheduler run-once --now` use `FixedClock`; production uses `SystemClock`.
All times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to (tests, time travel)."""

    def __init__(self, at: datetime) -> None:
        self._at = as_utc(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = as_utc(at)

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def as_utc(at: datetime) -> datetime:
    """Normalise an aware datetime to UTC; a naive one is taken as UTC (what MongoDB hands back)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)
