"""The worker's jobs, listed explicitly, and the one function that runs every due job at a moment."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.richmenu.segments import refresh_menus
from delivery.context import JobContext, JobSummary
from delivery.engine import Engine
from flows.broadcasts import runner as broadcasts
from flows.listeners import delivery_flows
from flows.points.expiry import expire_points
from flows.points.monthly import mark_monthly

log = logging.getLogger("linecrm.scheduler")

JobFunction = Callable[[JobContext, datetime, str | None], Awaitable[JobSummary]]


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFunction


async def drain_outbox(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
    """Ingest-signal intents left by a crash or a failed listener (`storage.signals`), run again."""
    return await ctx.database.signals.drain(ctx.database, now)


async def deliver(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
    """Every per-customer flow on the one engine (one due stream, one policy, one settle per contact)."""
    return await Engine(delivery_flows(ctx.settings.public_base)).run(ctx, now, shop_id)


async def broadcast(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
    """Segment broadcasts: freeze the audiences whose moment came, then multicast every due batch."""
    started = await broadcasts.start_due(ctx, now, shop_id)
    sent = await broadcasts.send_due(ctx, now, shop_id)
    return {**{f"start:{k}": v for k, v in started.items()}, **sent}


# Order matters: the outbox first, so flow state left behind by a crash is current before the flows run;
# points expiries before anything that shows or filters on a balance (notices, segments of broadcasts);
# the monthly notice's marking before the delivery that sends it.
JOBS: Sequence[Job] = (
    Job("outbox", drain_outbox),
    Job("points_expiry", expire_points),
    Job("points_monthly", mark_monthly),
    Job("delivery", deliver),
    Job("broadcasts", broadcast),
    Job("segment_menus", refresh_menus),
)


async def run_due_jobs(ctx: JobContext, now: datetime, shop_id: str | None = None,
                       jobs: Sequence[Job] = JOBS) -> dict[str, JobSummary]:
    """Run every job for `now` once; one job failing does not stop the others (it is retried next tick)."""
    summary: dict[str, JobSummary] = {}
    for job in jobs:
        try:
            summary[job.name] = await job.run(ctx, now, shop_id)
        except Exception:
            log.exception("job %s failed at %s", job.name, now.isoformat())
            summary[job.name] = {"error": 1}
    return summary
