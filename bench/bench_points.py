"""Points notices at scale: the monthly marking, the monthly send and the expiry job over a seeded shop.

Seeds one shop with `--customers` customers who have points (with their
contacts, as the ledger listener leaves them) and `--customers / 2` without
(the marking reads past them), and a second shop (the reference's), then
measures, with the code the worker runs:
1. the monthly marking (`points_monthly` job: one scan of the shop's customers, one `update_many` by `_id`
   per 50 with points), against a reference in the same run: the same marks written one `UpdateOne` per
   customer in bulk (the writes alone of a per-customer approach: a lower bound for it);
2. the delivery run that sends the monthly notices, with linesim in a child process limiting pushes to
   `--rate` per second;
3. the expiry job over `--expiring` customers whose lot expires now (chunked transactions), against the
   same work with one transaction per customer.

    .venv/bin/python -m bench.bench_points [--customers 100000] [--expiring 10000] [--rate 2000] [--no-send]

The database is a fresh embedded SecantusDB in a temporary directory (or MONGODB_URI).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import bench_database, wait_port

NOW = datetime(2038, 1, 1, 1, 0, tzinfo=UTC)  # 10:00 on January 1st in Tokyo: the monthly moment
MONTH = "2038-01"


def user(n: int) -> str:
    return f"U{n:032x}"


async def seed(db: Any, shop_id: str, customers: int, expiring: int) -> None:
    """Customers with points (and their contacts, as the ledger listener leaves them), half as many without,
    and `expiring` of those with points holding a lot (and its earn) that expires now."""
    from storage.contacts import NEVER

    started = time.perf_counter()
    earned_at = NOW - timedelta(days=200)
    for start in range(0, customers, 1000):
        docs, contacts, ledger = [], [], []
        for n in range(start, min(start + 1000, customers)):
            expires = n < expiring
            docs.append({
                "_id": f"{shop_id}:{user(n)}", "shop_id": shop_id, "line_user_id": user(n), "friend": True,
                "blocked": False, "opted_out": False, "tags": [], "linked": True, "browser_ids": [],
                "totals": {"purchase_count": 1, "total_spend": 5000, "first_seen_at": earned_at,
                           "last_purchase_at": earned_at},
                "points": {"balance": 500, "earned_total": 500, "soonest_expiring_amount": 300 if expires else 500,
                           "soonest_expiry_at": NOW - timedelta(minutes=1) if expires else NOW + timedelta(days=90),
                           "updated_at": earned_at},
                "created_at": earned_at,
            })
            if n % 2 == 0:  # a customer without points, whom the marking reads past
                docs.append({**docs[-1], "_id": f"{shop_id}:{user(n)}x", "line_user_id": f"{user(n)}x",
                             "points": {"balance": 0, "earned_total": 0, "soonest_expiring_amount": None,
                                        "soonest_expiry_at": None, "updated_at": earned_at}})
            contacts.append({"_id": f"{shop_id}:{user(n)}", "shop_id": shop_id, "line_user_id": user(n),
                             "flows": {"points_expiry": {"due_at": None}}, "next_due_at": NEVER, "v": 1,
                             "claim": None})
            for i, (amount, expiry) in enumerate(((300, NOW - timedelta(minutes=1)), (200, NOW + timedelta(days=90)))
                                                 if expires else ((500, NOW + timedelta(days=90)),)):
                ledger.append({"_id": f"{shop_id}:o{n}-{i}", "shop_id": shop_id, "transaction_id": f"o{n}-{i}",
                               "line_user_id": user(n), "type": "earn", "amount": amount, "delta": amount,
                               "expires_at": expiry, "reason": None, "occurred_at": earned_at + timedelta(seconds=i),
                               "created_at": earned_at})
        await db["customers"].insert_many(docs, ordered=False)
        await db["contacts"].insert_many(contacts, ordered=False)
        await db["points_ledger"].insert_many(ledger, ordered=False)
    print(f"seeded {customers:,} customers with points (and their contacts), {customers // 2:,} without, "
          f"{expiring:,} lots expiring now, in {time.perf_counter() - started:.0f}s", flush=True)


async def main(args: argparse.Namespace, sim_url: str) -> None:
    from pymongo import UpdateOne

    from core.line_client import LineClients
    from core.settings import Settings
    from delivery.context import JobContext
    from delivery.engine import Engine, EngineConfig
    from flows.listeners import connect_listeners, delivery_flows
    from flows.points.expiry import expire_points
    from flows.points.monthly import mark_monthly
    from linesim.client import SimClient
    from storage import schema
    from storage.contacts import states_pipeline
    from storage.database import connect
    from storage.points import PointsRepository
    from storage.shop_settings import PointsSettings, QuietHours, ShopSettingsRepository
    from storage.shops import LineCredentials, ShopRepository

    async with bench_database("bench_points") as (uri, db_name):
        db = connect(uri, db_name)
        connect_listeners(db.signals)
        await db.ensure_indexes(schema.INDEXES)
        shops = ShopRepository(db)
        shop, _ = await shops.create(name="bench", timezone="Asia/Tokyo",
                                     line=LineCredentials("secret", "tok-bench"), now=NOW)
        reference, _ = await shops.create(name="reference", timezone="Asia/Tokyo",
                                          line=LineCredentials("secret", "tok-ref"), now=NOW)
        settings = PointsSettings(monthly_notice=True, earned_notice=False, expiry_reminder=False,
                                  quiet_hours=QuietHours(enabled=False))
        await ShopSettingsRepository(db).put(shop.shop_id, settings, NOW)
        await seed(db, shop.shop_id, args.customers, args.expiring)
        await seed(db, reference.shop_id, args.expiring // 5, args.expiring // 5)
        line = LineClients(sim_url, timeout=10)
        ctx = JobContext(database=db, line=line, settings=Settings(mongodb_uri=uri, line_api_base=sim_url,
                                                                   public_base_url="https://bot.example"),
                         worker_id="bench")

        # 3. the expiry job (first, as in a worker tick), chunked vs one transaction per customer.
        t0 = time.perf_counter()
        expired = await expire_points(ctx, NOW, shop.shop_id)
        chunked = time.perf_counter() - t0
        repo = PointsRepository(db)
        users = [doc["line_user_id"] async for doc in repo.due_cursor(reference.shop_id, NOW)]
        t0 = time.perf_counter()
        single = await repo.expire_due(reference.shop_id, users, NOW, chunk_size=1)
        one_each = time.perf_counter() - t0
        per, ref_per = chunked / max(expired.get("customers", 1), 1), one_each / max(single.customers, 1)
        print(f"expiry job: {expired.get('customers', 0):,} customers ({expired.get('entries', 0):,} entries) in "
              f"{chunked:.1f}s = {per * 1000:.2f} ms/customer; reference, one transaction per customer: "
              f"{single.customers:,} in {one_each:.1f}s = {ref_per * 1000:.2f} ms/customer "
              f"(chunked ÷ reference: {per / ref_per:.2f})", flush=True)

        # 1. the monthly marking, and the per-customer reference over the same contacts (then undone).
        t0 = time.perf_counter()
        marked = await mark_monthly(ctx, NOW, None)
        marking = time.perf_counter() - t0
        count = marked.get("marked", 0)
        print(f"monthly marking: {count:,} contacts marked ({args.customers * 3 // 2:,} customers read) in "
              f"{marking:.1f}s = {marking / max(count, 1) * 1000:.3f} ms/customer", flush=True)
        ids = [f"{shop.shop_id}:{user(n)}" for n in range(args.customers)]
        fields = {"month": "2038-02", "moment": NOW, "due_at": NOW}
        t0 = time.perf_counter()
        for start in range(0, len(ids), 1000):
            await db["contacts"].bulk_write([UpdateOne({"_id": i}, states_pipeline(
                shop.shop_id, "", {"points_monthly_ref": fields}, None)) for i in ids[start:start + 1000]],
                ordered=False)
        per_customer = time.perf_counter() - t0
        await db["contacts"].update_many({"shop_id": shop.shop_id}, {"$unset": {"flows.points_monthly_ref": ""}})
        print(f"reference, its writes as one bulk UpdateOne per customer: {len(ids):,} in {per_customer:.1f}s = "
              f"{per_customer / len(ids) * 1000:.3f} ms/customer (marking ÷ reference: "
              f"{marking / per_customer:.2f})", flush=True)

        # 2. the delivery run that sends them (linesim answers every push, at LINE's rate).
        if args.send:
            async with SimClient(sim_url) as client:
                await client.config(rate_limits={"push": args.rate}, validate=args.validate)
            t0 = time.perf_counter()
            summary = await Engine(delivery_flows("https://bot.example")).run(
                ctx, NOW, shop.shop_id, EngineConfig(send_rate=args.rate))
            elapsed = time.perf_counter() - t0
            sent = summary.get("points_monthly:sent", 0)
            print(f"monthly send: {sent:,} notices in {elapsed:.1f}s = {sent / elapsed:,.0f}/s "
                  f"(÷ rate limit {args.rate:,.0f}/s = {sent / elapsed / args.rate:.0%}); {summary}", flush=True)
        await line.close()
        await db.close()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_points")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--expiring", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2_000, help="linesim's push limit per second (LINE: 2,000)")
    parser.add_argument("--send", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--validate", action="store_true", help="linesim validates every push against the schema")
    args = parser.parse_args()
    from storage.embedded import free_port

    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "linesim", "--port", str(sim_port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(sim_port)
        from core.runtime import tune_garbage_collector

        tune_garbage_collector()  # as the worker runs
        asyncio.run(main(args, f"http://127.0.0.1:{sim_port}"))
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sim.kill()


if __name__ == "__main__":
    cli()
