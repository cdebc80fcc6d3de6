"""When a reminder step is due: pure arithmetic over plain values (quiet hours are `delivery.windows`).

Never does I/O and never reads a clock: `now` is always handed in, so the same
function answers the real run, `run-once --now …` and the dry run alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


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
