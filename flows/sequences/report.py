"""A sequence's report: the engine's per-step figures (`delivery.report`) plus entries and goals.

Per step: `entered` (runs that reached the step: sent, skipped, held back or
failed), `sent`, `filtered` (steps its filter skipped, by check) besides the
engine's fields (skipped by every reason, held, deferred, clicks, conversions).
For the sequence: `entered` (runs started in the period), `goal_reached` (runs
that reached the goal in it), `conversions` (the engine's: orders that followed
a message of the sequence within the attribution window, and goals reached
after one — each order once), the holdout figures and the lift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from delivery.report import flow_report
from flows.sequences.definition import flow_name
from flows.sequences.filters import REASON_PREFIX
from storage.database import Database
from storage.sequences import SequenceRuns


async def sequence_report(database: Database, shop_id: str, sequence_id: str, steps: int, start: datetime,
                          end: datetime) -> dict[str, Any]:
    report = await flow_report(database, shop_id, flow_name(sequence_id), start, end, range(1, steps + 1))
    runs = SequenceRuns(database)
    reached, after_message = await runs.goal_counts(shop_id, sequence_id, start, end)
    body = report.as_dict()
    for row in body["steps"]:
        row["entered"] = row["targeted"]
        row["filtered"] = {reason[len(REASON_PREFIX):]: n for reason, n in row["skipped"].items()
                           if reason.startswith(REASON_PREFIX)}
    body.update({"sequence_id": sequence_id, "entered": await runs.entered_count(shop_id, sequence_id, start, end),
                 "goal_reached": reached, "goal_reached_after_message": after_message,
                 "conversions": report.totals.conversions})
    return body
