"""Browse reminders at scale: one run of the job over a seeded shop, against linesim's push rate limit.

Seeds one shop (default 100,000 linked customers due now, 1,000,000 product
views, 10,000 products) directly in the shapes the contracts give (the
reminder state as the ingest listeners leave it), then runs the reminders job
once — the code `python -m scheduler run-once` runs — with linesim in a child
process limiting pushes to `--rate` per second. Prints the due-set selection
time, carousels planned+built per second, database round trips per 1,000
messages (a PyMongo CommandListener counts every command), sends per second
÷ the rate limit and ÷ the database's own write ceiling (measured first: on
the embedded database the writes, not our code, bound the rate), and the peak
memory growth during the run.

    .venv/bin/python -m bench.bench_reminders [--customers 100000] [--views 1000000] [--products 10000] [--rate 2000]

The database is a fresh embedded SecantusDB in a temporary directory (or MONGODB_URI).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, monitoring

NOW = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo, outside quiet hours


class Commands(monitoring.CommandListener):
    """Counts database round trips by command name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.slow: Counter[str] = Counter()  # milliseconds per command name and collection
        self.enabled = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.enabled:
            self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if self.enabled:
            self.slow[event.command_name] += event.duration_micros // 1000

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU of a process so far (this one by default): who is busy during the run."""
    with open(f"/proc/{pid or os.getpid()}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def seed(db: Any, args: argparse.Namespace, shop_id: str) -> None:
    from flows.reminders.profile import views_from_rows
    from storage.reminders import new_cycle
    from storage.shop_settings import QuietHours, ReminderSettings, ShopSettingsRepository

    rng = random.Random(7)
    started = time.perf_counter()
    await ShopSettingsRepository(db).put(shop_id, ReminderSettings(enabled=True, quiet_hours=QuietHours(enabled=False)),
                                         NOW)
    categories = [f"cat{i}" for i in range(50)]
    products = []
    for i in range(args.products):
        stock = rng.choice([0, 1, 2, 5, 20, 100])
        products.append({
            "_id": f"{shop_id}:p{i}", "shop_id": shop_id, "product_id": f"p{i}",
            "title": f"ベンチマーク商品 {i} オーガニックコットン ワンピース", "url": f"https://shop.example/products/p{i}",
            "image_url": f"https://shop.example/img/p{i}.jpg", "image_urls": [], "price": rng.randrange(1000, 30000),
            "sale_price": None, "category": rng.choice(categories), "tags": [f"tag{rng.randrange(200)}"],
            "published": rng.random() > 0.05, "track_inventory": True, "continue_selling": False,
            "variants": [{"id": "v1", "title": "F", "price": None, "stock": stock}], "total_stock": stock,
            "sold_count": rng.randrange(0, 1000), "created_at": NOW, "updated_at": NOW,
        })
    for chunk in range(0, len(products), 1000):
        await db["products"].insert_many(products[chunk:chunk + 1000], ordered=False)
    for doc in products:
        doc["available"] = doc["published"] and doc["total_stock"] > 0
    await db["products"].update_many({"shop_id": shop_id, "total_stock": {"$gt": 0}, "published": True},
                                     {"$set": {"available": True}})
    await db["products"].update_many({"shop_id": shop_id, "available": {"$ne": True}}, {"$set": {"available": False}})
    per_customer = max(1, args.views // args.customers)
    anchor = NOW - timedelta(days=3, minutes=5)
    for start in range(0, args.customers, 1000):
        customers, views, profiles, states = [], [], [], []
        for n in range(start, min(start + 1000, args.customers)):
            user = f"U{n:032x}"
            cycle = new_cycle(anchor, anchor + timedelta(days=3), anchor)
            customers.append({
                "_id": f"{shop_id}:{user}", "shop_id": shop_id, "line_user_id": user, "friend": True, "blocked": False,
                "opted_out": False, "tags": [], "linked": True, "browser_ids": [f"b{n}"],
                "totals": {"purchase_count": 0, "total_spend": 0, "first_seen_at": anchor, "last_purchase_at": None},
                "created_at": anchor,
            })
            states.append({"_id": f"{shop_id}:{user}", "shop_id": shop_id, "line_user_id": user, **cycle})
            own = []
            for pid in rng.sample(range(args.products), min(per_customer, args.products)):
                own.append({
                    "_id": f"{shop_id}:b{n}:p{pid}", "shop_id": shop_id, "browser_id": f"b{n}", "product_id": f"p{pid}",
                    "line_user_id": user, "count": rng.randrange(1, 6), "first_viewed_at": anchor,
                    "last_viewed_at": anchor + timedelta(minutes=rng.randrange(60)),
                })
            views += own
            # The profile as the ingest listeners leave it (flows.reminders.state).
            profiles.append({"_id": f"{shop_id}:{user}", "shop_id": shop_id, "line_user_id": user,
                             "views": views_from_rows(own), "bought": {}, "updated_at": anchor})
        await db["customers"].insert_many(customers, ordered=False)
        await db["reminder_state"].insert_many(states, ordered=False)
        await db["product_views"].insert_many(views, ordered=False)
        await db["reminder_profiles"].insert_many(profiles, ordered=False)
        if start % 20000 == 0:
            print(f"  seeded {start + len(customers):,} customers ({time.perf_counter() - started:.0f}s)", flush=True)
    print(f"seeded {args.customers:,} customers, {args.customers * per_customer:,} views, {args.products:,} products "
          f"in {time.perf_counter() - started:.0f}s", flush=True)


async def write_ceiling(db: Any, shop_id: str, customers: int) -> float:
    """Messages/s the database alone allows: each message costs two `reminder_state` updates (claim,
    settle) and one delivery insert, measured here with the same shapes the engine writes (then undone)."""
    from pymongo import UpdateOne

    ids = [f"{shop_id}:U{n:032x}" for n in range(min(500, customers))]
    t0 = time.perf_counter()
    await db["reminder_state"].bulk_write([UpdateOne({"_id": i}, {"$set": {"bench": 1}}) for i in ids],
                                          ordered=False)
    await db["reminder_state"].bulk_write([UpdateOne({"_id": i}, {"$unset": {"bench": ""}}) for i in ids],
                                          ordered=False)
    updates = time.perf_counter() - t0
    t0 = time.perf_counter()
    await db["deliveries"].insert_many([{"_id": f"bench-{i}", "shop_id": shop_id, "key": f"bench:{i}",
                                         "campaign": "bench", "at": NOW, "line_user_id": f"U{i}", "sent_at": NOW,
                                         "products": [{"product_id": "p", "reason": "viewed 3×"}] * 5}
                                        for i in range(len(ids))], ordered=False)
    inserts = time.perf_counter() - t0
    await db["deliveries"].delete_many({"campaign": "bench"})
    per_message = updates / len(ids) + inserts / len(ids)
    print(f"database write ceiling: reminder_state update {updates / len(ids) / 2 * 1000:.2f} ms, delivery insert "
          f"{inserts / len(ids) * 1000:.2f} ms → at most {1 / per_message:,.0f} messages/s "
          "(2 state updates + 1 insert each; the server applies writes one at a time)")
    return 1 / per_message


async def main(args: argparse.Namespace) -> None:
    from flows.reminders.engine import EngineConfig, run_reminders

    from core.line_client import LineClients
    from core.settings import Settings
    from delivery.context import JobContext
    from flows.reminders.plan import Planner
    from linesim.client import SimClient
    from storage import schema
    from storage.database import Database
    from storage.embedded import free_port, server_command
    from storage.reminders import CUSTOMER_FIELDS, ReminderStateRepository, find_by_ids, with_state
    from storage.shops import LineCredentials, ShopRepository

    children: list[subprocess.Popen[bytes]] = []
    db_process: subprocess.Popen[bytes] | None = None
    tmp = tempfile.mkdtemp(prefix="bench-reminders-")
    try:
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            port = free_port()
            db_process = subprocess.Popen(
                [*server_command(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", f"{tmp}/db",
                 "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            children.append(db_process)
            wait_port(port)
            uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        sim_port = free_port()
        sim_process = subprocess.Popen([sys.executable, "-m", "linesim", "--port", str(sim_port)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        children.append(sim_process)
        wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"

        listener = Commands()
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, tz_aware=True, event_listeners=[listener])
        database = Database(client=client, db=client["bench_" + secrets.token_hex(4)])
        await database.ensure_indexes(schema.INDEXES)
        shop, _ = await ShopRepository(database).create(
            name="bench", timezone="Asia/Tokyo", line=LineCredentials("secret", "tok-" + secrets.token_hex(8)), now=NOW)
        await seed(database, args, shop.shop_id)

        repo = ReminderStateRepository(database)
        t0 = time.perf_counter()
        first_batch = None
        due = 0
        async for refs in repo.due_stream(NOW, None, 500):
            first_batch = first_batch if first_batch is not None else time.perf_counter() - t0
            due += len(refs)
        print(f"due-set selection (one streaming cursor over the {due:,} due, indexed): first batch of 500 after "
              f"{(first_batch or 0) * 1000:.0f} ms, whole set streamed in {(time.perf_counter() - t0) * 1000:.0f} ms")

        ceiling = await write_ceiling(database, shop.shop_id, args.customers)

        listener.enabled = True
        ids = [f"{shop.shop_id}:U{n:032x}" for n in range(min(2000, args.customers))]
        states = {doc["_id"]: doc for doc in await find_by_ids(database["reminder_state"], ids)}
        sample = [with_state(doc, states[doc["_id"]])
                  for doc in await find_by_ids(database["customers"], ids, CUSTOMER_FIELDS)]
        planner = Planner(database, "https://bot.example")
        t0 = time.perf_counter()
        await planner.plan(sample[:1], NOW)  # the shop's catalogue, read once per run
        catalogue = time.perf_counter() - t0
        t0 = time.perf_counter()
        built = 0
        for i in range(0, len(sample), 500):
            built += sum(1 for p in await planner.plan(sample[i:i + 500], NOW, recovering=()) if p.message is not None)
        elapsed = time.perf_counter() - t0
        print(f"catalogue of {args.products:,} products read once per run in {catalogue * 1000:.0f} ms")
        print(f"carousels planned and built (profile reads + decisions + Flex): {built / elapsed:,.0f}/s "
              f"({built} in {elapsed:.2f}s; database ms by command {dict(listener.slow.most_common(4))})")
        listener.enabled = False
        listener.slow.clear()

        async with SimClient(sim_url) as sim:
            config: dict[str, Any] = {"rate_limits": {"push": args.rate}}
            if args.sim_retry_retention is not None:
                # linesim scans every remembered retry key on each push (O(n) per push), so on long runs
                # the simulator, not our code, becomes the bottleneck; a short retention keeps its scan small.
                config["retry_key_retention"] = args.sim_retry_retention
            await sim.config(**config)
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
        listener.counts.clear()
        listener.enabled = True
        t0 = time.perf_counter()
        processes = {"bench (our code)": None, "linesim": sim_process.pid}
        if db_process is not None:
            processes["database server"] = db_process.pid
        cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        summary = await run_reminders(ctx, NOW, None, EngineConfig(send_rate=args.rate, concurrency=args.concurrency))
        elapsed = time.perf_counter() - t0
        cpu_used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
        listener.enabled = False
        stop.set()
        await sampler
        await line.close()
        sent = summary.get("sent", 0)
        trips = sum(listener.counts.values())
        print(f"run: {summary}")
        print(f"sent {sent:,} pushes in {elapsed:.1f}s = {sent / elapsed:,.0f}/s; "
              f"÷ rate limit {args.rate:,.0f}/s = {sent / elapsed / args.rate:.1%}; "
              f"÷ database ceiling {ceiling:,.0f}/s = {sent / elapsed / ceiling:.1%}")
        print(f"database round trips: {trips:,} = {trips / max(sent, 1) * 1000:.1f} per 1,000 messages "
              f"({dict(listener.counts.most_common())})")
        print(f"database time by command (ms): {dict(listener.slow.most_common())}")
        print(f"peak memory: +{max(peak) - base_rss:.0f} MB over {base_rss:.0f} MB during the run")
        print(f"CPU during the run ({os.cpu_count()} CPUs, {elapsed:.1f}s): " + ", ".join(
            f"{name} {used:.1f}s ({used / elapsed:.0%} of one CPU, {used / max(sent, 1) * 1000:.2f} ms/message)"
            for name, used in cpu_used.items()))
        await client.drop_database(database.db.name)
        await client.close()
    finally:
        for child in children:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_reminders")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2_000, help="linesim's push limit per second (LINE: 2,000)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sim-retry-retention", type=float, default=None,
                        help="seconds linesim remembers retry keys (default: its own, 24 h; see main())")
    args = parser.parse_args()
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
