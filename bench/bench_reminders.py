"""Browse reminders at scale on the delivery engine, against an answering LINE stand-in, in one run.

For each size (default 10,000 and 100,000 customers due now) it seeds a fresh
embedded database directly in the shapes the ingest listeners leave (customers,
contacts with their `flows.reminders` cycle, `reminder_profiles` with views, a
catalogue), measures the database's own write ceiling for what one message
costs (the claim's `update_many` and the settle's conditional update, the same
shapes the engine writes, on a copy of the collection), then runs the engine
once — the code `python -m scheduler run-once` runs — with linesim in a child
process answering pushes (its per-request schema validation off unless
`--validate`; retry keys, quota and the push rate limit still apply).

Prints, per size: sends/s ÷ the write ceiling and ÷ LINE's rate limit; CPU
milliseconds per message of this process (the engine), of linesim and of the
database server; database round trips per 1,000 messages (a PyMongo command
listener counts every command); and the peak memory growth of this process.

    .venv/bin/python -m bench.bench_reminders [--sizes 10000,100000] [--views 10] [--products 10000] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, UpdateOne

from bench.common import Commands, cpu_seconds, rss_mb, wait_port

NOW = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo, outside quiet hours


async def seed(db: Any, shop_id: str, customers: int, views: int, products: int) -> None:
    from flows.reminders.profile import views_from_rows
    from flows.reminders.state import new_cycle
    from storage.shop_settings import QuietHours, ReminderSettings, ShopSettingsRepository

    rng = random.Random(7)
    started = time.perf_counter()
    settings = ReminderSettings(enabled=True, quiet_hours=QuietHours(enabled=False))
    await ShopSettingsRepository(db).put(shop_id, settings, NOW)
    categories = [f"cat{i}" for i in range(50)]
    catalogue = []
    for i in range(products):
        stock = rng.choice([0, 1, 2, 5, 20, 100])
        published = rng.random() > 0.05
        catalogue.append({
            "_id": f"{shop_id}:p{i}", "shop_id": shop_id, "product_id": f"p{i}",
            "title": f"ベンチマーク商品 {i} オーガニックコットン ワンピース", "url": f"https://shop.example/products/p{i}",
            "image_url": f"https://shop.example/img/p{i}.jpg", "image_urls": [], "price": rng.randrange(1000, 30000),
            "sale_price": None, "category": rng.choice(categories), "tags": [f"tag{rng.randrange(200)}"],
            "published": published, "track_inventory": True, "continue_selling": False,
            "variants": [{"id": "v1", "title": "F", "price": None, "stock": stock}], "total_stock": stock,
            "available": published and stock > 0, "sold_count": rng.randrange(0, 1000), "created_at": NOW,
            "updated_at": NOW,
        })
    for chunk in range(0, len(catalogue), 1000):
        await db["products"].insert_many(catalogue[chunk:chunk + 1000], ordered=False)
    anchor = NOW - timedelta(days=3, minutes=5)
    cycle = new_cycle(settings, anchor, anchor)
    for start in range(0, customers, 1000):
        people, contacts, profiles = [], [], []
        for n in range(start, min(start + 1000, customers)):
            user = f"U{n:032x}"
            key = f"{shop_id}:{user}"
            people.append({
                "_id": key, "shop_id": shop_id, "line_user_id": user, "friend": True, "blocked": False,
                "opted_out": False, "tags": [], "linked": True, "browser_ids": [f"b{n}"],
                "totals": {"purchase_count": 0, "total_spend": 0, "first_seen_at": anchor, "last_purchase_at": None},
                "created_at": anchor,
            })
            contacts.append({"_id": key, "shop_id": shop_id, "line_user_id": user, "v": 1, "claim": None,
                             "flows": {"reminders": dict(cycle)}, "next_due_at": cycle["due_at"]})
            rows = [{"product_id": f"p{pid}", "count": rng.randrange(1, 6), "first_viewed_at": anchor,
                     "last_viewed_at": anchor + timedelta(minutes=rng.randrange(60))}
                    for pid in rng.sample(range(products), min(views, products))]
            profiles.append({"_id": key, "shop_id": shop_id, "line_user_id": user, "views": views_from_rows(rows),
                             "bought": {}, "updated_at": anchor})
        await db["customers"].insert_many(people, ordered=False)
        await db["contacts"].insert_many(contacts, ordered=False)
        await db["reminder_profiles"].insert_many(profiles, ordered=False)
    print(f"  seeded {customers:,} customers ({views} viewed products each), {products:,} products "
          f"in {time.perf_counter() - started:.0f}s", flush=True)


async def write_ceiling(db: Any, shop_id: str, sample: int) -> float:
    """Messages/s the database alone allows: each message costs its share of the claim's `update_many`
    and one conditional settle update — measured on a copy of `sample` contacts with the same shapes."""
    from storage.leases import DUE_INDEX, NEVER

    scratch = db["ceiling_contacts"]
    docs = [doc async for doc in db["contacts"].find({"shop_id": shop_id}).limit(sample)]
    await scratch.insert_many(docs, ordered=False)
    await scratch.create_index(DUE_INDEX, name="contact_due")
    lease = NOW + timedelta(minutes=5)
    t0 = time.perf_counter()
    await scratch.update_many({"next_due_at": {"$lte": NOW}}, [{"$set": {
        "prev_claim": "$claim", "claim": "ceiling", "next_due_at": lease}}], hint="contact_due")
    claim = (time.perf_counter() - t0) / len(docs)
    settles = [UpdateOne({"_id": doc["_id"], "claim": "ceiling", "v": doc["v"]}, {
        "$set": {"flows.reminders": {**doc["flows"]["reminders"], "next_step": 1, "due_at": NOW + timedelta(days=4)},
                 "next_due_at": NOW + timedelta(days=4), "claim": None, "prev_claim": None},
        "$push": {"sent": {"$each": [{"at": NOW, "flow": "reminders"}], "$slice": -60},
                  "log": {"$each": [{"flow": "reminders", "key": secrets.token_hex(16), "step": 1, "status": "sent",
                                     "at": NOW, "sent_at": NOW, "group": "treated", "cycle": "c"}], "$slice": -30}},
    }, hint="_id_") for doc in docs]
    t0 = time.perf_counter()
    await scratch.bulk_write(settles, ordered=False)
    settle = (time.perf_counter() - t0) / len(docs)
    await scratch.drop()
    ceiling = 1 / (claim + settle)
    print(f"  database write ceiling: claim {claim * 1000:.3f} ms + settle {settle * 1000:.3f} ms per contact "
          f"→ at most {ceiling:,.0f} messages/s (the server applies writes one at a time)", flush=True)
    assert NEVER > NOW
    return ceiling


async def one_size(args: argparse.Namespace, customers: int) -> None:
    from core.line_client import LineClients
    from core.settings import Settings
    from delivery.context import JobContext
    from delivery.engine import Engine, EngineConfig
    from flows.listeners import delivery_flows
    from linesim.client import SimClient
    from storage import schema
    from storage.database import Database
    from storage.embedded import free_port, server_command
    from storage.shops import LineCredentials, ShopRepository

    print(f"\n== {customers:,} customers due now", flush=True)
    children: list[asyncio.subprocess.Process] = []
    quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
    with tempfile.TemporaryDirectory(prefix="bench-reminders-") as tmp:
        try:
            db_port = free_port()
            db_process = await asyncio.create_subprocess_exec(
                *server_command(), "--host", "127.0.0.1", "--port", str(db_port), "--storage-path", f"{tmp}/db",
                "--log-level", "WARNING", **quiet)  # type: ignore[arg-type]
            children.append(db_process)
            sim_port = free_port()
            sim_process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "linesim", "--port", str(sim_port), **quiet)  # type: ignore[arg-type]
            children.append(sim_process)
            wait_port(db_port)
            wait_port(sim_port)
            uri = f"mongodb://127.0.0.1:{db_port}/?directConnection=true"
            sim_url = f"http://127.0.0.1:{sim_port}"
            listener = Commands()
            client: AsyncMongoClient[Any] = AsyncMongoClient(uri, tz_aware=True, event_listeners=[listener])
            database = Database(client=client, db=client["bench"])
            await database.ensure_indexes(schema.INDEXES)
            shop, _ = await ShopRepository(database).create(
                name="bench", timezone="Asia/Tokyo", line=LineCredentials("secret", "tok-" + secrets.token_hex(8)),
                now=NOW)
            await seed(database, shop.shop_id, customers, args.views, args.products)
            ceiling = await write_ceiling(database, shop.shop_id, min(customers, 5000))

            async with SimClient(sim_url) as sim:
                await sim.config(rate_limits={"push": args.rate}, validate=args.validate,
                                 retry_key_retention=3600)
            settings = Settings(mongodb_uri=uri, line_api_base=sim_url, public_base_url="https://bot.example",
                                line_timeout_seconds=10)
            line = LineClients(sim_url, timeout=10)
            ctx = JobContext(database=database, line=line, settings=settings, worker_id="bench")
            base_rss, peak = rss_mb(), [rss_mb()]
            stop = asyncio.Event()

            async def sample_rss() -> None:
                while not stop.is_set():
                    peak.append(rss_mb())
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample_rss())
            processes = {"engine (this process)": os.getpid(), "linesim": sim_process.pid,
                         "database server": db_process.pid}
            cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
            listener.counts.clear()
            listener.micros.clear()
            listener.enabled = True
            t0 = time.perf_counter()
            config = EngineConfig(send_rate=args.rate, concurrency=args.concurrency, batch_size=args.batch)
            profiler = cProfile.Profile() if args.profile else None
            if profiler is not None:
                profiler.enable()
            summary = await Engine(delivery_flows(settings.public_base)).run(ctx, NOW, None, config)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{args.profile}.{customers}")
            elapsed = time.perf_counter() - t0
            listener.enabled = False
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
            stop.set()
            await sampler
            await line.close()
            sent = summary.get("sent", 0)
            trips = sum(listener.counts.values())
            rate = sent / elapsed
            print(f"  run: {dict(sorted((k, v) for k, v in summary.items() if ':' not in k))}")
            print(f"  sent {sent:,} pushes in {elapsed:.1f}s = {rate:,.0f}/s")
            print(f"  ÷ database write ceiling {ceiling:,.0f}/s = {rate / ceiling:.2f}    "
                  f"÷ LINE push limit {args.rate:,.0f}/s = {rate / args.rate:.2f}")
            print(f"  database round trips: {trips:,} = {trips / max(sent, 1) * 1000:.1f} per 1,000 messages "
                  f"({dict(listener.counts.most_common())})")
            print("  database time per message by command (round trip, as the driver saw it): " + ", ".join(
                f"{name} {micros / max(sent, 1) / 1000:.3f} ms" for name, micros in listener.micros.most_common()))
            print("  CPU per message: " + ", ".join(
                f"{name} {used / max(sent, 1) * 1000:.2f} ms ({used / elapsed:.0%} of a CPU)"
                for name, used in cpu.items()))
            print(f"  peak memory: +{max(peak) - base_rss:.0f} MB over {base_rss:.0f} MB during the run", flush=True)
            await client.close()
        finally:
            for child in children:
                child.terminate()
                try:
                    await asyncio.wait_for(child.wait(), timeout=15)
                except TimeoutError:
                    child.kill()
                    await child.wait()


async def main(args: argparse.Namespace) -> None:
    print(f"bench_reminders: {os.cpu_count()} CPUs; linesim validation {'on' if args.validate else 'off'}")
    for size in args.sizes:
        await one_size(args, size)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_reminders")
    parser.add_argument("--sizes", type=lambda text: [int(x) for x in text.split(",")], default=[10_000, 100_000])
    parser.add_argument("--views", type=int, default=10, help="viewed products per customer")
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2_000, help="linesim's push limit per second (LINE: 2,000)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile", metavar="FILE", help="profile the engine's run (cProfile) into FILE.SIZE; "
                        "its figures then include the profiler's overhead")
    parser.add_argument("--validate", action="store_true", help="linesim validates every push against the schema")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from core.runtime import tune_garbage_collector

    tune_garbage_collector()  # as the worker runs
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
