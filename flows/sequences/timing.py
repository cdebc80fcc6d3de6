"""When a run's next step falls due and when it may go out: pure arithmetic over the definition.

`wait_minutes` counts from the trigger for step 1 and from the moment the
previous step was handled for the others (its due time, or later when a send
window or the frequency cap held it back). Outside the send window the send
moves to the next allowed moment (`delivery.windows.next_allowed`, shop time).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from delivery.flow import Window
from delivery.windows import next_allowed
from flows.sequences.definition import SendWindow, Step


def step_due(anchor: datetime, step: Step) -> datetime:
    return anchor + timedelta(minutes=step.wait_minutes)


def send_window(window: SendWindow | None) -> Window | None:
    """The definition's window as the policy applies it (None: any time)."""
    if window is None:
        return None
    return Window("send_window", window.start_time(), window.end_time(), quiet=False,
                  weekdays=window.weekday_numbers())


def send_moment(anchor: datetime, step: Step, window: SendWindow | None, timezone: str) -> datetime:
    """When the step would go out, frequency cap aside: its due time, moved into the window if outside."""
    due = step_due(anchor, step)
    made = send_window(window)
    if made is None:
        return due
    return next_allowed(due, made, timezone) or due
