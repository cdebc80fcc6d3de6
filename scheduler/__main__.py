"""`python -m scheduler` (the worker loop) and `python -m scheduler run-once --now … [--shop ID]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.clock import SystemClock, as_utc
from core.line_client import LineClients
from core.runtime import tune_garbage_collector
from core.settings import Settings, SettingsError, load_settings
from delivery.context import JobContext
from flows.listeners import connect_listeners
from scheduler.jobs import JOBS, Job, run_due_jobs
from storage import schema
from storage.lifecycle import open_database

log = logging.getLogger("linecrm.scheduler")

TICK_SECONDS = 60
STOP_GRACE_SECONDS = 20.0


def _parse_now(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {value!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("--now needs a time zone offset, e.g. 2026-12-01T10:00:00+09:00")
    return as_utc(moment)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scheduler", description="the worker process")
    commands = parser.add_subparsers(dest="command")
    once = commands.add_parser("run-once", help="run every job due at one moment, print a JSON summary")
    once.add_argument("--now", type=_parse_now, required=True, help="ISO 8601 with offset")
    once.add_argument("--shop", default=None, help="only this shop")
    return parser


@contextlib.asynccontextmanager
async def job_context(settings: Settings) -> AsyncIterator[JobContext]:
    async with open_database(settings.mongodb_uri, settings.mongodb_db, settings.data_dir, schema.INDEXES) as database:
        connect_listeners(database.signals)
        line = LineClients(settings.line_api_base, timeout=settings.line_timeout_seconds)
        try:
            worker_id = f"{socket.gethostname()}:{os.getpid()}"
            yield JobContext(database=database, line=line, settings=settings, worker_id=worker_id)
        finally:
            await line.close()


async def run_once(settings: Settings, now: datetime, shop_id: str | None) -> dict[str, object]:
    async with job_context(settings) as ctx:
        jobs = await run_due_jobs(ctx, now, shop_id)
    return {"now": now.isoformat(), "shop": shop_id, "jobs": jobs}


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None,
                     grace: float = STOP_GRACE_SECONDS, jobs: Sequence[Job] = JOBS) -> None:
    """Tick every minute until SIGTERM/SIGINT (or `stop`); a tick that is still running is not overlapped.

    On stop, the tick in flight may finish (up to `grace` seconds) before the database and LINE
    clients close under it; past that it is cancelled, and its leased batch goes to another worker
    when the lease runs out (nothing is lost or sent twice either way).
    """
    clock = SystemClock()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running: set[asyncio.Task[None]] = set()
    async with job_context(settings) as ctx:

        async def tick() -> None:
            task = asyncio.current_task()
            assert task is not None
            running.add(task)
            try:
                summary = await run_due_jobs(ctx, clock.now(), jobs=jobs)
            finally:
                running.discard(task)
            if any(summary.values()):
                log.info("tick: %s", json.dumps(summary, ensure_ascii=False))

        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(tick, "interval", seconds=TICK_SECONDS, max_instances=1, coalesce=True, next_run_time=clock.now())
        scheduler.start()
        log.info("worker %s started; ticking every %ss", ctx.worker_id, TICK_SECONDS)
        await stop.wait()
        scheduler.pause()  # no new tick; APScheduler's shutdown would cancel the running one
        if running:
            log.info("waiting up to %ss for the running tick", grace)
            _, late = await asyncio.wait(set(running), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        scheduler.shutdown(wait=False)
    log.info("worker stopped")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tune_garbage_collector()
    if args.command == "run-once":
        summary = asyncio.run(run_once(settings, args.now, args.shop))
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    asyncio.run(run_worker(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
