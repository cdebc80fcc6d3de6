"""Browser-event ingestion: events/s accepted (204) with persistence, from a loopback load generator.

Closed loop: `--concurrency` senders post back to back to `POST /t/{shop}/events`
for `--seconds`, first one event per request (what a beacon sends), then
batches of `--batch`. Every event is a product `page_view` from one of
`--browsers` browsers (so no browser hits the per-minute budget), with an
allowed `Origin`. Afterwards it checks that every accepted event was stored and
counted in `product_views`.

    .venv/bin/python -m bench.bench_events [--seconds 10] [--concurrency 32] [--batch 5] [--browsers 5000]

The app runs in a child process so the load generator does not share its event
loop; the database is the embedded SecantusDB (or MONGODB_URI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import secrets
import statistics
import time
from typing import Any

import aiohttp

from bench.common import bench_database

ORIGIN = "https://shop.example"


def _serve(port: int, uri: str, db_name: str, ready: Any) -> None:
    import logging

    from aiohttp import web

    from bot.app import create_app
    from core.settings import Settings

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(mongodb_uri=uri, mongodb_db=db_name, line_api_base="http://127.0.0.1:9",
                        line_data_api_base="http://127.0.0.1:9", public_base_url="http://bench.test",
                        log_level="WARNING")

    async def main() -> None:
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def _body(browsers: list[str], batch: int) -> bytes:
    browser = random.choice(browsers)
    events = [
        {"event_id": secrets.token_urlsafe(16), "browser_id": browser, "type": "page_view",
         "url": f"{ORIGIN}/products/p{n}", "product_id": f"p{n}", "utm": {"source": "line"}}
        for n in random.sample(range(1, 200), batch)
    ]
    return json.dumps(events[0] if batch == 1 else events).encode()


async def _closed(url: str, seconds: float, concurrency: int, batch: int, browsers: list[str]) -> dict[str, float]:
    latencies: list[float] = []
    accepted = refused = 0
    headers = {"Content-Type": "text/plain;charset=UTF-8", "Origin": ORIGIN}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal accepted, refused
            while time.perf_counter() < deadline:
                body = _body(browsers, batch)
                began = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 204:
                        accepted += batch
                    else:
                        refused += 1
                latencies.append(time.perf_counter() - began)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "events": accepted,
        "events_per_s": accepted / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "refused": refused,
    }


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
    await ShopSettingsRepository(database).put(shop.shop_id, TrackingSettings(allowed_origins=[ORIGIN]), now)
    return shop.shop_id, database


async def _stored(database: Any, shop_id: str) -> tuple[int, int]:
    events = await database["events"].count_documents({"shop_id": shop_id})
    views = 0
    async for row in await database["product_views"].aggregate(
        [{"$match": {"shop_id": shop_id}}, {"$group": {"_id": None, "n": {"$sum": "$count"}}}]
    ):
        views = row["n"]
    return events, views


async def bench(args: argparse.Namespace) -> None:
    async with bench_database("bench_events") as (uri, db_name):
        await _bench(args, uri, db_name)


async def _bench(args: argparse.Namespace, uri: str, db_name: str) -> None:
    from storage.embedded import free_port

    context = multiprocessing.get_context("spawn")
    port = free_port()
    ready = context.Event()
    process = context.Process(target=_serve, args=(port, uri, db_name, ready), daemon=True)
    process.start()
    database = None
    try:
        shop_id, database = await _prepare(uri, db_name)
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the app did not start")
        url = f"http://127.0.0.1:{port}/t/{shop_id}/events"
        browsers = [secrets.token_urlsafe(16) for _ in range(args.browsers)]
        await _closed(url, 1, 4, 1, browsers)  # warm-up
        base_events, base_views = await _stored(database, shop_id)
        print(f"event ingestion benchmark: {os.cpu_count()} CPUs, loopback, {args.concurrency} concurrent senders, "
              f"{args.browsers} browsers, {args.seconds:.0f} s per run")
        accepted = 0
        for batch in (1, args.batch):
            result = await _closed(url, args.seconds, args.concurrency, batch, browsers)
            accepted += int(result["events"])
            print(f"  {batch:>2} event(s)/request: {result['events_per_s']:>7.0f} events/s accepted "
                  f"({result['requests_per_s']:.0f} req/s)  p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms"
                  f"  refused: {result['refused']:.0f}")
        events, views = await _stored(database, shop_id)
        print(f"  persisted: {events - base_events} of {accepted} accepted events; "
              f"{views - base_views} views counted in product_views")
    finally:
        process.terminate()
        process.join(10)
        if database is not None:
            await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--browsers", type=int, default=5000)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
