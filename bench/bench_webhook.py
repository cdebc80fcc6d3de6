"""Webhook throughput: signed requests with several events each, from a loopback load generator.

Prints events/s and p50/p99 acknowledgement latency for our `/webhook/{shop}`
(signature check, every event persisted, handling after the ack) and, in the
same run, for line-bot-sdk's plain aiohttp echo-bot pattern (signature check +
`WebhookParser.parse`, nothing stored, no reply call) as the reference; then
checks that every event we acknowledged was stored and handled.

    .venv/bin/python -m bench.bench_webhook [--rate 500] [--seconds 10] [--per-request 5]

The app servers run in child processes so the load generator does not share
their event loop; the database is the embedded SecantusDB (or MONGODB_URI).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import statistics
import time
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import bench_database
from linesim import webhook as events
from storage.embedded import free_port

SHOP_SECRET = "bench-channel-secret"


def _serve_ours(port: int, uri: str, db_name: str, ready: Any) -> None:
    from bot.app import create_app
    from core.settings import Settings

    settings = Settings(mongodb_uri=uri, mongodb_db=db_name, line_api_base="http://127.0.0.1:9",
                        line_data_api_base="http://127.0.0.1:9", public_base_url="http://bench.test",
                        log_level="WARNING")
    _run(create_app(settings), port, ready)


def _serve_reference(port: int, ready: Any) -> None:
    """line-bot-sdk's aiohttp echo-bot handler, minus the reply call (which would need LINE)."""
    from linebot.v3 import WebhookParser
    from linebot.v3.exceptions import InvalidSignatureError
    from linebot.v3.webhooks import MessageEvent, TextMessageContent

    parser = WebhookParser(SHOP_SECRET)

    async def handle(request: web.Request) -> web.Response:
        signature = request.headers["X-Line-Signature"]
        body = await request.text()
        try:
            parsed = parser.parse(body, signature)
        except InvalidSignatureError:
            return web.Response(status=400, text="Invalid signature")
        for event in parsed:
            if isinstance(event, MessageEvent) and isinstance(event.message, TextMessageContent):
                pass  # the echo bot would `await line_bot_api.reply_message(...)` here
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/callback", handle)
    _run(app, port, ready)


def _run(app: web.Application, port: int, ready: Any) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def _body(per_request: int) -> tuple[bytes, str]:
    batch = [events.text_message_event("U" + secrets.token_hex(16), "こんにちは") for _ in range(per_request)]
    body = events.webhook_body(batch)
    return body, events.sign(body, SHOP_SECRET)


async def _paced(url: str, rate: float, seconds: float, per_request: int) -> dict[str, float]:
    """Open loop: a request every per_request/rate seconds, latency from its scheduled start."""
    interval = per_request / rate
    total = int(seconds / interval)
    bodies = [_body(per_request) for _ in range(total)]
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

        async def one(index: int, start: float) -> None:
            nonlocal failures
            await asyncio.sleep(max(0.0, start + index * interval - time.perf_counter()))
            scheduled = start + index * interval
            body, signature = bodies[index]
            async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                             "X-Line-Signature": signature}) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - scheduled)

        start = time.perf_counter() + 0.05
        await asyncio.gather(*(one(i, start) for i in range(total)))
        elapsed = time.perf_counter() - start
    return _summary(latencies, total * per_request, elapsed, failures)


async def _closed(url: str, seconds: float, per_request: int, concurrency: int) -> dict[str, float]:
    """Closed loop: `concurrency` clients sending back to back - the maximum rate."""
    bodies = [_body(per_request) for _ in range(200)]
    latencies: list[float] = []
    failures = 0
    sent = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        deadline = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            nonlocal failures, sent
            index = offset
            while time.perf_counter() < deadline:
                body, signature = bodies[index % len(bodies)]
                body, signature = _body(per_request) if index >= len(bodies) else (body, signature)
                began = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                                 "X-Line-Signature": signature}) as response:
                    await response.read()
                    failures += response.status != 200
                latencies.append(time.perf_counter() - began)
                sent += per_request
                index += concurrency

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _summary(latencies, sent, elapsed, failures)


def _summary(latencies: list[float], event_count: int, elapsed: float, failures: int) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "events": event_count,
        "events_per_s": event_count / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "failures": failures,
    }


def _line(name: str, result: dict[str, float]) -> str:
    return (f"  {name:<34} {result['events']:>7.0f} events  {result['events_per_s']:>8.0f} ev/s  "
            f"p50 {result['p50_ms']:>7.2f} ms  p99 {result['p99_ms']:>7.2f} ms  non-200: {result['failures']:.0f}")


async def _prepare(uri: str, db_name: str) -> tuple[str, Any]:
    from core.clock import SystemClock
    from storage.database import connect
    from storage.shops import LineCredentials, ShopRepository

    database = connect(uri, db_name)
    shop, _ = await ShopRepository(database).create(
        name="bench", timezone="Asia/Tokyo", line=LineCredentials(SHOP_SECRET, "bench-token"), now=SystemClock().now()
    )
    return shop.shop_id, database


async def _wait_handled(database: Any, shop_id: str, expected: int, timeout: float = 120) -> tuple[int, int, float]:
    started = time.perf_counter()
    collection = database["webhook_events"]
    while True:
        stored = await collection.count_documents({"shop_id": shop_id})
        pending = await collection.count_documents({"state": "handling"})
        if (stored >= expected and pending == 0) or time.perf_counter() - started > timeout:
            return stored, pending, time.perf_counter() - started
        await asyncio.sleep(0.2)


async def bench(args: argparse.Namespace) -> None:
    async with bench_database("bench_webhook") as (uri, db_name):
        await _bench(args, uri, db_name)


async def _bench(args: argparse.Namespace, uri: str, db_name: str) -> None:
    context = multiprocessing.get_context("spawn")
    ours_port, reference_port = free_port(), free_port()
    ours_ready, reference_ready = context.Event(), context.Event()
    ours = context.Process(target=_serve_ours, args=(ours_port, uri, db_name, ours_ready), daemon=True)
    reference = context.Process(target=_serve_reference, args=(reference_port, reference_ready), daemon=True)
    ours.start()
    reference.start()
    database = None
    try:
        shop_id, database = await _prepare(uri, db_name)
        for ready in (ours_ready, reference_ready):
            if not await asyncio.to_thread(ready.wait, 60):
                raise RuntimeError("a server did not start")
        ours_url = f"http://127.0.0.1:{ours_port}/webhook/{shop_id}"
        reference_url = f"http://127.0.0.1:{reference_port}/callback"
        await _paced(ours_url, 100, 1, args.per_request)  # warm-up (connections, indexes, caches)
        await _paced(reference_url, 100, 1, args.per_request)
        await _wait_handled(database, shop_id, 0)
        already = await database["webhook_events"].count_documents({"shop_id": shop_id})

        print(f"webhook benchmark: {args.per_request} events/request, {os.cpu_count()} CPUs, loopback")
        print(f"paced at {args.rate:.0f} events/s for {args.seconds:.0f} s (latency from scheduled send):")
        paced_ours = await _paced(ours_url, args.rate, args.seconds, args.per_request)
        print(_line("ours (verify+persist, ack)", paced_ours))
        stored, pending, waited = await _wait_handled(database, shop_id, already + int(paced_ours["events"]))
        print(f"    stored {stored - already} of {paced_ours['events']:.0f} acknowledged events; "
              f"{pending} still unhandled after {waited:.1f} s")
        paced_reference = await _paced(reference_url, args.rate, args.seconds, args.per_request)
        print(_line("reference (SDK echo-bot pattern)", paced_reference))

        print(f"closed loop, {args.concurrency} concurrent senders for {args.seconds:.0f} s (max rate):")
        before = await database["webhook_events"].count_documents({"shop_id": shop_id})
        max_ours = await _closed(ours_url, args.seconds, args.per_request, args.concurrency)
        print(_line("ours", max_ours))
        stored, pending, waited = await _wait_handled(database, shop_id, before + int(max_ours["events"]))
        print(f"    stored {stored - before} of {max_ours['events']:.0f} acknowledged events; "
              f"handling caught up {waited:.1f} s after the load stopped ({pending} unhandled)")
        max_reference = await _closed(reference_url, args.seconds, args.per_request, args.concurrency)
        print(_line("reference", max_reference))
        print(f"ratio ours/reference: max events/s {max_ours['events_per_s'] / max_reference['events_per_s']:.2f}; "
              f"paced p99 {paced_ours['p99_ms'] / paced_reference['p99_ms']:.1f}x")
        goal = paced_ours["p99_ms"] < 50 and paced_ours["failures"] == 0
        print(f"goal (p99 < 50 ms at {args.rate:.0f} events/s, all persisted): {'met' if goal else 'NOT met'}")
    finally:
        for process in (ours, reference):
            process.terminate()
            process.join(10)
        if database is not None:
            await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_webhook", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500, help="paced events per second (default 500)")
    parser.add_argument("--seconds", type=float, default=10, help="length of each run (default 10)")
    parser.add_argument("--per-request", type=int, default=5, help="events per webhook request (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop senders (default 16)")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
