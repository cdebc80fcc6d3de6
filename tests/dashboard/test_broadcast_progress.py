"""The broadcast page's progress bar (pure): everyone handled counts, whatever happened to them."""

from __future__ import annotations

from dashboard.broadcasts import progress


def test_broadcast_progress_counts_everyone_handled() -> None:
    assert progress({"status": "scheduled", "targeted": 0}) == 0.0
    assert progress({"status": "done", "targeted": 0}) == 1.0
    assert progress({"status": "sending", "targeted": 10, "sent": 4, "failed": 1}) == 0.5
    assert progress({"status": "sending", "targeted": 10, "sent": 4, "held": 2, "skipped": {"blocked": 2},
                     "unsent": 0}) == 0.8
    assert progress({"status": "sending", "targeted": 2, "sent": 5}) == 1.0
