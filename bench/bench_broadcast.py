"""A broadcast to 100,000 customers against linesim at LINE's multicast limit.

Seeds one shop with `--customers` customers (default 105,264: every 20th has blocked the account, so
100,000 are reachable; 12 % subscribe to one of three plans — subscription-app tags —, everyone has order
totals), then, with the code the worker runs:
1. previews segments (count and sample, the admin API's query): the quality bar's "plan A or B subscribers
   who spent at least 10,000 yen", and every reachable friend (the broadcast's segment);
2. a *reference* in the same run: linesim alone, a bare aiohttp loop posting the same number of 500-ID
   multicasts at the same pace (our rate limiter) — what the stand-in allows at the limit;
3. the broadcast: its start (the audience frozen in one transaction) and its multicasts (plan per
   recipient with the delivery policy, retry keys, records, figures, settles);
and prints the time, the achieved multicast rate ÷ the limit (and ÷ the reference), database round trips,
and the peak memory growth of this process during the broadcast. linesim runs in a child process limited
to `--rate` multicasts per second (LINE: 200/s) and answers every request; it is checked to have recorded
every recipient once.

    .venv/bin/python -m bench.bench_broadcast [--customers 100000] [--rate 200] [--cap]

`--cap` sets a frequency cap on the shop (each recipient's send history is then read at send time).
The database is a fresh embedded SecantusDB in a temporary directory (or MONGODB_URI).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from bench.common import Commands, await_port, bench_database, rss_mb

NOW = datetime(2037, 12, 10, 1, 0, tzinfo=UTC)
PLANS = ["subscription-101-plan:定期便A", "subscription-102-plan:定期便B", "subscription-103-plan:お試し"]
SUBSCRIBERS = {"tags_any": PLANS[:2], "total_spent": {"min": 10_000}}
EVERYONE: dict[str, Any] = {}
MESSAGES: list[dict[str, Any]] = [{"type": "text", "text": "【会員様限定】冬のセールのお知らせ"},
            {"type": "template", "altText": "セール会場へ", "template": {"type": "buttons", "text": "セール会場はこちら",
             "actions": [{"type": "uri", "label": "見る", "uri": "https://shop.example/sale"}]}}]


async def seed(database: Any, shop_id: str, n: int) -> tuple[int, int]:
    """n customers in the shapes storage keeps; how many the subscriber segment and everyone hold."""
    from storage.customers import new_customer_fields
    from storage.keys import customer_key

    rng = random.Random(3)
    matching = reachable = 0
    started = time.perf_counter()
    for start in range(0, n, 2000):
        docs = []
        for i in range(start, min(start + 2000, n)):
            user = f"U{i:032x}"
            tags = [rng.choice(PLANS)] if rng.random() < 0.12 else []
            tags += [f"purchase-count:{rng.randrange(1, 12)}"] if rng.random() < 0.5 else ["newsletter"]
            spend = rng.randrange(0, 60_000)
            flags = {"friend": i % 20 != 0, "blocked": i % 20 == 0, "opted_out": False}
            doc = new_customer_fields(shop_id, user, NOW)
            doc.update(_id=customer_key(shop_id, user), tags=tags, linked=rng.random() < 0.6,
                       rank=rng.choice(["gold", "silver", None]), display_name="テスト ユーザー",
                       totals={"purchase_count": rng.randrange(0, 12), "total_spend": spend, "first_seen_at": NOW,
                               "last_purchase_at": NOW - timedelta(days=rng.randrange(1, 300))},
                       points={"balance": rng.randrange(0, 5000)}, **flags)
            docs.append(doc)
            reachable += flags["friend"]
            matching += flags["friend"] and spend >= 10_000 and bool(set(tags) & set(PLANS[:2]))
        await database["customers"].insert_many(docs, ordered=False)
    print(f"seeded {n:,} customers in {time.perf_counter() - started:.0f}s", flush=True)
    return matching, reachable


async def timed_preview(database: Any, shop_id: str, spec: dict[str, Any], runs: int = 3) -> tuple[int, list[float]]:
    from storage.segments import SegmentFilter, audience_query, preview

    times, count = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        found = await preview(database, audience_query(shop_id, SegmentFilter.model_validate(spec), NOW), 10)
        times.append(time.perf_counter() - t0)
        count = found.count
    return count, times


async def reference(sim_url: str, batches: int, rate: float, concurrency: int) -> float:
    """linesim alone: the same number of 500-ID multicasts at the same pace, from a bare aiohttp loop."""
    from delivery.pacing import RateLimiter

    limiter = RateLimiter(rate, burst=1)
    semaphore = asyncio.Semaphore(concurrency)
    token = "ref-" + secrets.token_hex(8)
    users = [f"U{i:032x}" for i in range(500)]

    async def post(session: aiohttp.ClientSession, i: int) -> None:
        async with semaphore:
            await limiter.acquire()
            headers = {"Authorization": f"Bearer {token}", "X-Line-Retry-Key": str(__import__("uuid").uuid4())}
            async with session.post(f"{sim_url}/v2/bot/message/multicast", headers=headers,
                                    json={"to": users, "messages": MESSAGES[:1]}) as response:
                assert response.status == 200, await response.text()

    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(post(session, i) for i in range(batches)))
        return time.perf_counter() - t0


async def main(args: argparse.Namespace) -> None:
    from core.line_client import LineClients
    from core.settings import Settings
    from delivery.context import JobContext
    from flows.broadcasts.create import broadcast_document
    from flows.broadcasts.runner import BroadcastConfig, send_due, start_due
    from linesim.client import SimClient
    from storage import schema
    from storage.broadcasts import BroadcastRepository
    from storage.database import Database
    from storage.embedded import free_port
    from storage.segments import SegmentFilter
    from storage.shop_settings import DeliverySettings, FrequencyCap, ShopSettingsRepository
    from storage.shops import LineCredentials, ShopRepository

    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "linesim", "--port", str(sim_port)],  # noqa: ASYNC220
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await await_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        async with bench_database("bench_broadcast") as (uri, db_name), SimClient(sim_url) as control:
            await control.config(rate_limits={"multicast": args.rate})
            listener = Commands()
            client: AsyncMongoClient[Any] = AsyncMongoClient(uri, tz_aware=True, event_listeners=[listener])
            database = Database(client=client, db=client[db_name])
            await database.ensure_indexes(schema.INDEXES)
            shop, _ = await ShopRepository(database).create(
                name="bench", timezone="Asia/Tokyo", line=LineCredentials("secret", "tok-" + secrets.token_hex(8)),
                now=NOW)
            if args.cap:
                await ShopSettingsRepository(database).put(
                    shop.shop_id, DeliverySettings(frequency_cap=FrequencyCap(per_day=3)), NOW)
            subscribers, expected = await seed(database, shop.shop_id, args.customers)

            count, times = await timed_preview(database, shop.shop_id, SUBSCRIBERS)
            assert count == subscribers, (count, subscribers)
            print(f"preview of plan A/B subscribers who spent >= 10,000 yen ({count:,} of {args.customers:,} "
                  f"customers): {min(times) * 1000:.0f} ms best, {statistics.median(times) * 1000:.0f} ms median "
                  f"of {len(times)}")
            broad, broad_times = await timed_preview(database, shop.shop_id, EVERYONE)
            assert broad == expected, (broad, expected)
            print(f"preview of every reachable friend ({broad:,}): {min(broad_times) * 1000:.0f} ms best, "
                  f"{statistics.median(broad_times) * 1000:.0f} ms median (every friend is read)")

            multicasts = -(-expected // 500)
            ref = await reference(sim_url, multicasts, args.rate, args.concurrency)
            print(f"reference (linesim alone, {multicasts} multicasts of 500 at the same pace): {ref:.2f}s = "
                  f"{multicasts / ref:.0f}/s = {multicasts / ref / args.rate:.0%} of the limit")
            await control.reset()
            await control.config(rate_limits={"multicast": args.rate})

            spec = SegmentFilter.model_validate(EVERYONE)
            await BroadcastRepository(database).create(broadcast_document(
                shop.shop_id, "bench", "subs", spec, MESSAGES, NOW, NOW, expected))
            settings = Settings(mongodb_uri=uri, line_api_base=sim_url, public_base_url="https://bot.example",
                                line_timeout_seconds=10)
            line = LineClients(sim_url, timeout=10)
            ctx = JobContext(database=database, line=line, settings=settings, worker_id="bench")
            base_rss, peak = rss_mb(), [rss_mb()]
            stop = asyncio.Event()

            async def sample_rss() -> None:
                while not stop.is_set():
                    peak.append(rss_mb())
                    await asyncio.sleep(0.1)

            sampler = asyncio.create_task(sample_rss())
            listener.enabled = True
            t0 = time.perf_counter()
            started = await start_due(ctx, NOW, None)
            frozen = time.perf_counter() - t0
            t1 = time.perf_counter()
            sent = await send_due(ctx, NOW, None, BroadcastConfig(multicast_rate=args.rate,
                                                                  concurrency=args.concurrency))
            sending = time.perf_counter() - t1
            total = time.perf_counter() - t0
            listener.enabled = False
            stop.set()
            await sampler
            await line.close()

            recorded = await control.messages(kind="multicast")
            recipients = Counter(u for m in recorded for u in m["to"])
            assert len(recipients) == sum(recipients.values()) == expected == sent.get("sent"), "not exactly once"
            trips = sum(listener.counts.values())
            posted = sent.get("multicasts", 0)
            print(f"start: {started}")
            print(f"send: {sent}")
            print(f"broadcast to {expected:,} recipients: {total:.2f}s (freeze {frozen:.2f}s, multicasts {sending:.2f}s)")
            print(f"multicasts: {posted} in {sending:.2f}s = {posted / sending:.0f}/s; ÷ limit {args.rate:.0f}/s = "
                  f"{posted / sending / args.rate:.0%}; ÷ reference = {posted / sending / (multicasts / ref):.0%}; "
                  f"whole broadcast incl. freeze ÷ limit = {posted / total / args.rate:.0%}")
            print(f"database round trips: {trips:,} ({dict(listener.counts.most_common())})")
            print(f"peak memory: +{max(peak) - base_rss:.0f} MB over {base_rss:.0f} MB during the broadcast")
            print(f"linesim recorded {len(recorded)} multicasts, every recipient once")
            await client.close()
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sim.kill()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_broadcast")
    parser.add_argument("--customers", type=int, default=105_264, help="every 20th blocked: 100,000 reachable")
    parser.add_argument("--rate", type=float, default=200, help="linesim's multicast limit per second (LINE: 200)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cap", action="store_true", help="a frequency cap on the shop (send history read)")
    args = parser.parse_args()
    from core.runtime import tune_garbage_collector

    tune_garbage_collector()  # as the worker runs
    asyncio.run(main(args))


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    cli()
