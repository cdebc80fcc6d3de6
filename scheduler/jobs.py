"""The registry of scheduled jobs and the one function that runs every due job at a moment."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from bot.line_client import LineClients
from bot.settings import Settings
from storage.database import Database

log = logging.getLogger("linecrm.scheduler")

JobSummary = dict[str, int]


@dataclass(frozen=True)
class JobContext:
    """What a job may use: no globals, everything handed in."""

    database: Database
    line: LineClients
    settings: Settings
    worker_id: str


JobFunction = Callable[[JobContext, datetime, str | None], Awaitable[JobSummary]]


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFunction


JOBS: list[Job] = []


def register_job(name: str) -> Callable[[JobFunction], JobFunction]:
    """Feature packages add their job here; `run_due_jobs` runs them all in order."""

    def add(function: JobFunction) -> JobFunction:
        if all(job.name != name for job in JOBS):
            JOBS.append(Job(name, function))
        return function

    return add


async def run_due_jobs(ctx: JobContext, now: datetime, shop_id: str | None = None) -> dict[str, JobSummary]:
    """Run every job for `now` once; one job failing does not stop the others (it is retried next tick)."""
    summary: dict[str, JobSummary] = {}
    for job in JOBS:
        try:
            summary[job.name] = await job.run(ctx, now, shop_id)
        except Exception:
            log.exception("job %s failed at %s", job.name, now.isoformat())
            summary[job.name] = {"error": 1}
    return summary
