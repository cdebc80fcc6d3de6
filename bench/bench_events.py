"""Browser-event load test: our `POST /t/{shop}/events` against a minimal persisting endpoint, open loop.

Every process stands apart, so the load generator never starves the app: the
embedded database (SecantusDB, or MONGODB_URI), our app, and the reference - a
bare aiohttp endpoint that validates the same event model and stores each
request's events with one `insert_many` (no budgets, no view counters, no
group commit, no journal wait): the least any endpoint that persists events
does, on the same machine and database in the same run. This process only
generates load and checks.

The load is open-loop at fixed rates (latency counts from the scheduled
moment): product `page_view`s from `--browsers` browsers with an allowed
Origin, 1 and 5 events per request. For both it prints p50/p99 at each rate and
the highest rate whose p99 stays under 50 ms with every request accepted; for
ours, that every accepted event was stored and counted once in `product_views`
(the counters follow the 204: the time until they stop growing after the load
is printed), and database round trips per event (a command listener in the app).

    .venv/bin/python -m bench.bench_events [--seconds 6] [--rates 100,300,500,1000] [--per-request 1,5]
                                           [--ladder 250,500,750,1000,1500,2000] [--skip-ladder]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import Commands, bench_database, run
from storage.embedded import free_port

ORIGIN = "https://shop.example"
GOAL_MS = 50.0
CLIENT_TIMEOUT = 10.0
SHOP_EVENTS_PER_MINUTE = 1_000_000  # the bench shop's budget: the load, not the budget, is measured


def _serve_ours(port: int, uri: str, db_name: str, ready: Any) -> None:
    from pymongo import monitoring

    from bench.bench_webhook import _run
    from bot.app import create_app
    from core.settings import Settings

    commands = Commands(enabled=True, by_collection=True)
    monitoring.register(commands)
    settings = Settings(mongodb_uri=uri, mongodb_db=db_name, line_api_base="http://127.0.0.1:9",
                        line_data_api_base="http://127.0.0.1:9", public_base_url="http://bench.test",
                        log_level="WARNING")
    app = create_app(settings)

    async def db_commands(request: web.Request) -> web.Response:
        return web.json_response(dict(commands.counts))

    app.router.add_get("/_bench/db", db_commands)
    _run(app, port, ready)


def _serve_reference(port: int, uri: str, db_name: str, ready: Any) -> None:
    """Validate with the same model, then one `insert_many` per request; 204."""
    from pymongo import WriteConcern

    from bench.bench_webhook import _run
    from linking.tracking import parse_events
    from storage.database import Database, connect

    NO_JOURNAL_WAIT = WriteConcern(w=1, j=False)  # as documented: the client's default now waits for the journal
    app = web.Application()
    databases: list[Database] = []

    async def db_ctx(app: web.Application) -> Any:
        databases.append(connect(uri, db_name))
        yield
        await databases[0].close()

    async def post(request: web.Request) -> web.Response:
        events = parse_events(await request.read())
        await databases[0]["reference_events"].with_options(write_concern=NO_JOURNAL_WAIT).insert_many(
            [{"shop_id": request.match_info["shop_id"], **event.model_dump(exclude_none=True)} for event in events])
        return web.Response(status=204, headers={"Access-Control-Allow-Origin": ORIGIN})

    app.cleanup_ctx.append(db_ctx)
    app.router.add_post("/t/{shop_id}/events", post)
    _run(app, port, ready)


def _body(browsers: list[str], per_request: int, rng: random.Random) -> bytes:
    browser = rng.choice(browsers)
    events = [
        {"event_id": secrets.token_urlsafe(16), "browser_id": browser, "type": "page_view",
         "url": f"{ORIGIN}/products/p{n}", "product_id": f"p{n}", "utm": {"source": "line"}}
        for n in rng.sample(range(1, 200), per_request)
    ]
    return json.dumps(events[0] if per_request == 1 else events).encode()


@dataclass
class Run:
    offered: float
    per_request: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    accepted: int

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000

    @property
    def achieved(self) -> float:
        return self.accepted / self.seconds

    @property
    def meets_goal(self) -> bool:
        return set(self.statuses) == {204} and self.p99_ms < GOAL_MS


async def paced(url: str, browsers: list[str], rate: float, seconds: float, per_request: int,
                rng: random.Random) -> Run:
    interval = per_request / rate
    total = max(1, int(seconds / interval))
    bodies = [_body(browsers, per_request, rng) for _ in range(total)]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    accepted = [0]
    headers = {"Content-Type": "text/plain;charset=UTF-8", "Origin": ORIGIN}
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def one(index: int, start: float) -> None:
            scheduled = start + index * interval
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            try:
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 599
            latencies.append(time.perf_counter() - scheduled)
            statuses[status] += 1
            if status == 204:
                accepted[0] += per_request

        start = time.perf_counter() + 0.05
        await asyncio.gather(*(one(i, start) for i in range(total)))
    return Run(rate, per_request, total * interval, latencies, statuses, accepted[0])


def _row(name: str, run: Run) -> str:
    other = ", ".join(f"{status}: {n}" for status, n in sorted(run.statuses.items()) if status != 204)
    return (f"  {name:<9} {run.offered:>6.0f} ev/s x{run.per_request}  p50 {run.p50_ms:>8.1f} ms  "
            f"p99 {run.p99_ms:>8.1f} ms  accepted {run.achieved:>6.0f} ev/s  {'all 204' if not other else other}")


async def _json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


async def _prepare(uri: str, db_name: str) -> tuple[str, Any]:
    from core.clock import SystemClock
    from storage.database import connect
    from storage.shop_settings import ShopSettingsRepository, TrackingSettings
    from storage.shops import LineCredentials, ShopRepository

    database = connect(uri, db_name)
    now = SystemClock().now()
    shop, _ = await ShopRepository(database).create(
        name="bench", timezone="Asia/Tokyo", line=LineCredentials("bench-secret", "bench-token"), now=now
    )
    await ShopSettingsRepository(database).put(
        shop.shop_id, TrackingSettings(allowed_origins=[ORIGIN], events_per_minute=SHOP_EVENTS_PER_MINUTE), now)
    return shop.shop_id, database


async def _stored(database: Any, shop_id: str) -> tuple[int, int, int]:
    """(events stored, of them not yet applied, views counted) - the bench's database holds one shop."""
    from storage.tracking_batches import TrackingBatchRepository

    events, waiting = await TrackingBatchRepository(database).stored()
    views = 0
    async for row in await database["product_views"].aggregate(
        [{"$match": {"shop_id": shop_id}}, {"$group": {"_id": None, "n": {"$sum": "$count"}}}]
    ):
        views = row["n"]
    return events, waiting, views


async def settle(database: Any, shop_id: str, timeout: float = 180) -> float:
    """Wait until every stored event is applied and the stores stop growing (requests abandoned by the client
    may still be writing), so one run's backlog never lands in the next; returns how long that took."""
    started = time.perf_counter()
    last = None
    while time.perf_counter() - started < timeout:
        stored = await _stored(database, shop_id)
        now = (stored, await database["reference_events"].estimated_document_count())
        if now == last and stored[1] == 0:
            break
        last = now
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def bench(args: argparse.Namespace) -> None:
    async with bench_database("bench_events") as (uri, db_name):
        await _bench(args, uri, db_name)


async def _bench(args: argparse.Namespace, uri: str, db_name: str) -> None:
    from bench.bench_webhook import _start

    ours_port, reference_port = free_port(), free_port()
    processes = [_start(_serve_ours, ours_port, uri, db_name), _start(_serve_reference, reference_port, uri, db_name)]
    database = None
    try:
        shop_id, database = await _prepare(uri, db_name)
        for _, ready in processes:
            if not await asyncio.to_thread(ready.wait, 60):
                raise RuntimeError("a server did not start")
        ours_base = f"http://127.0.0.1:{ours_port}"
        targets = {"ours": f"{ours_base}/t/{shop_id}/events",
                   "reference": f"http://127.0.0.1:{reference_port}/t/{shop_id}/events"}
        rng = random.Random(15)
        browsers = [secrets.token_urlsafe(16) for _ in range(args.browsers)]
        for url in targets.values():
            await paced(url, browsers, 50, 1, 1, rng)  # warm-up
        print(f"browser-event benchmark: {os.cpu_count()} CPUs, loopback; database: "
              f"{'MONGODB_URI' if os.environ.get('MONGODB_URI') else 'embedded SecantusDB'}; {args.browsers} browsers; "
              f"open loop, {args.seconds:.0f} s per run, latency from the scheduled send")
        print("  reference = the same validation + one insert_many per request (no budgets, counters, journal wait)")

        async def ours(rate: float, per_request: int) -> Run:
            await settle(database, shop_id)
            events_before, _, views_before = await _stored(database, shop_id)
            commands = Counter(await _json(ours_base + "/_bench/db"))
            run = await paced(targets["ours"], browsers, rate, args.seconds, per_request, rng)
            lag = await settle(database, shop_id)
            events_after, _, views_after = await _stored(database, shop_id)
            commands = Counter(await _json(ours_base + "/_bench/db")) - commands
            stored = events_after - events_before
            top = ", ".join(f"{name} {n / max(1, stored):.2f}" for name, n in commands.most_common(6))
            print(_row("ours", run))
            print(f"            stored {stored} of {run.accepted} accepted events, {views_after - views_before} views "
                  f"counted (all applied within {lag:.1f} s after the load); {sum(commands.values()) / max(1, stored):.2f} "
                  f"database round trips/event ({top})")
            return run

        for per_request in args.per_request:
            for rate in args.rates:
                await ours(rate, per_request)
                await settle(database, shop_id)
                print(_row("reference", await paced(targets["reference"], browsers, rate, args.seconds, per_request,
                                                    rng)))
        if args.skip_ladder:
            return
        for per_request in args.per_request:
            print(f"rising load, {per_request} event(s)/request: the highest rate with p99 < {GOAL_MS:.0f} ms, all 204")
            best: dict[str, float] = {"ours": 0.0, "reference": 0.0}
            for name in ("ours", "reference"):
                misses = 0
                for rate in args.ladder:
                    if name == "ours":
                        run = await ours(rate, per_request)
                    else:
                        await settle(database, shop_id)
                        run = await paced(targets[name], browsers, rate, args.seconds, per_request, rng)
                        print(_row(name, run))
                    if run.meets_goal:
                        best[name] = rate
                    else:
                        misses += 1
                        if misses >= args.misses:
                            break
                    await asyncio.sleep(1)
            print(f"  highest rate with p99 < {GOAL_MS:.0f} ms, {per_request}/request: ours {best['ours']:.0f} ev/s, "
                  f"reference {best['reference']:.0f} ev/s")
    finally:
        for process, _ in processes:
            process.terminate()
            process.join(30)
        if database is not None:
            await database.close()


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_events", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6, help="length of each run (default 6)")
    parser.add_argument("--rates", type=_floats, default=[100, 300, 500, 1000], help="events/s")
    parser.add_argument("--per-request", type=lambda t: [int(p) for p in t.split(",")], default=[1, 5])
    parser.add_argument("--ladder", type=_floats, default=[250, 500, 750, 1000, 1500, 2000, 3000])
    parser.add_argument("--misses", type=int, default=2, help="stop a ladder after this many misses (default 2)")
    parser.add_argument("--skip-ladder", action="store_true")
    parser.add_argument("--browsers", type=int, default=5000)
    run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
