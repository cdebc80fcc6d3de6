"""When a reminder step is due, and quiet hours: pure arithmetic over plain values.

Never does I/O and never reads a clock: `now` is always handed in, so the same
function answers the real run, `run-once --now …` and the dry run alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class DueSteps:
    """Which step to send now (if any) and which earlier ones it supersedes."""

    send: int | None  # index of the step to send now
    superseded: tuple[int, ...]  # overdue steps that are skipped, never sent late in a burst
    next_due_at: datetime | None  # when the first unhandled step falls due (when nothing is due now)


def step_due_at(anchor: datetime, delay_days: int) -> datetime:
    return anchor + timedelta(days=delay_days)


def due_steps(anchor: datetime, delays: Sequence[int], next_step: int, now: datetime) -> DueSteps:
    """The latest step at or after `next_step` that is due at `now`; earlier due ones are superseded.

    A customer linked long after their first view (or a worker that was down)
    must not receive every overdue step at once: only the latest is sent.
    """
    due = [index for index in range(next_step, len(delays)) if step_due_at(anchor, delays[index]) <= now]
    if due:
        return DueSteps(send=due[-1], superseded=tuple(due[:-1]), next_due_at=None)
    if next_step < len(delays):
        return DueSteps(send=None, superseded=(), next_due_at=step_due_at(anchor, delays[next_step]))
    return DueSteps(send=None, superseded=(), next_due_at=None)


def _parse(clock_time: str) -> time:
    return time.fromisoformat(clock_time)


def quiet_until(now: datetime, start: str, end: str, timezone: str) -> datetime | None:
    """The end of the quiet window containing `now` (shop time), or None when `now` is outside it.

    The window [start, end) may cross midnight (21:00–09:00). The end is computed
    on the local calendar and converted back, so it is right in zones with DST too.
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start_t, end_t = _parse(start), _parse(end)
    clock = local.time().replace(tzinfo=None)
    if start_t < end_t:
        inside = start_t <= clock < end_t
        end_date = local.date()
    else:  # crosses midnight
        inside = clock >= start_t or clock < end_t
        end_date = local.date() + timedelta(days=1) if clock >= start_t else local.date()
    if not inside:
        return None
    end_local = datetime.combine(end_date, end_t, tzinfo=zone)
    # A wall-clock end that does not exist (DST gap) resolves forward through UTC arithmetic.
    return end_local.astimezone(now.tzinfo) if now.tzinfo else end_local
