"""Once-per-period work of the worker (e.g. a shop's monthly notice): one leased run document per period.

Document (`job_runs`, `_id` = the run's ID, e.g. "points_monthly:<shop_id>:2038-01"): status ("running" |
"done"), lease_until, started_at, finished_at.

A worker takes a run by creating it, or by taking over one whose lease ran out (its worker died); every
other worker skips it, so the work happens at most once per period however many workers tick. A worker
may die half-way, so the work itself must be idempotent: the one that takes over does it again, and what
was done already changes nothing. Reads and writes by `_id` only: no index of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.database import Database, Document

JOB_RUNS = "job_runs"


class JobRuns:
    def __init__(self, database: Database) -> None:
        self._runs = database[JOB_RUNS]

    async def take(self, run_id: str, now: datetime, lease: timedelta) -> Document | None:
        """The run, now held by the caller until `now + lease`; None when it is done or another worker holds it."""
        try:
            doc: Document = {"_id": run_id, "status": "running", "lease_until": now + lease, "started_at": now}
            await self._runs.insert_one(doc)
            return doc
        except DuplicateKeyError:
            return await self._runs.find_one_and_update(
                {"_id": run_id, "status": "running", "lease_until": {"$lte": now}},
                {"$set": {"lease_until": now + lease}}, return_document=ReturnDocument.AFTER)

    async def finish(self, run_id: str, now: datetime) -> None:
        await self._runs.update_one({"_id": run_id}, {"$set": {"status": "done", "finished_at": now}})
