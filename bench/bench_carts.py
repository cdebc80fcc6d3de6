"""Cart reminders at scale: one delivery run over 10,000 abandoned carts, against an answering linesim.

Seeds one shop (default 10,000 linked friends, each with an abandoned cart of
1–4 lines, 1,000 products) in exactly the shapes ingest writes — the cart and
the journey come from the same pure functions the listeners use
(`flows.carts.cart.apply_platform`, `flows.carts.journey.arm`) — then runs the
delivery engine once with the worker's flows (`flows.listeners.delivery_flows`)
and linesim (a child process, answering every push) as LINE. Prints sends per
second, that rate ÷ the database's own write ceiling measured in the same run
(the writes a message costs: its share of the claim's `update_many` and its
contact's settle in a bulk write, the engine's own shapes, on a scratch copy of
the contacts), database round trips per 1,000 messages (a PyMongo
CommandListener counts every command of the run), and CPU per message of this
process (the engine), linesim and the database server. linesim's per-request
schema validation is off unless `--validate` (retry keys, quota and the push
rate limit still apply), as in `bench.bench_reminders`.

    .venv/bin/python -m bench carts [--carts 10000] [--products 1000] [--rate 2000] [--validate]

The database is a fresh embedded SecantusDB in a temporary directory, a child process.
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
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, UpdateOne

from bench.common import Commands, await_port, cpu_seconds

NOW = datetime(2026, 12, 10, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo


async def seed(db: Any, shop_id: str, args: argparse.Namespace) -> None:
    from flows.carts.cart import CartClock, PlatformCart, apply_platform
    from flows.carts.journey import arm
    from storage.carts import cart_key
    from storage.keys import customer_key
    from storage.products import product_key
    from storage.shop_settings import CartSettings, QuietHours, ShopSettingsRepository

    rng = random.Random(7)
    settings = CartSettings(enabled=True, delay_hours=3, recovery_url_template="https://shop.example/cart/{cart_token}",
                            quiet_hours=QuietHours(enabled=False))
    await ShopSettingsRepository(db).put(shop_id, settings, NOW)
    products = []
    for i in range(args.products):
        stock = rng.choice([0, 1, 2, 5, 20, 100])
        products.append({
            "_id": product_key(shop_id, f"p{i}"), "shop_id": shop_id, "product_id": f"p{i}",
            "title": f"ベンチマーク商品 {i} オーガニックコットン ワンピース", "url": f"https://shop.example/products/p{i}",
            "image_url": f"https://shop.example/img/p{i}.jpg", "price": rng.randrange(1000, 30000), "sale_price": None,
            "published": True, "track_inventory": True, "continue_selling": False,
            "variants": [{"id": "v1", "title": "Mサイズ", "stock": stock}], "total_stock": stock,
            "available": stock > 0, "sold_count": 0, "created_at": NOW, "updated_at": NOW,
        })
    await db["products"].insert_many(products, ordered=False)
    started = time.perf_counter()
    for start in range(0, args.carts, 1000):
        customers, carts, contacts = [], [], []
        for n in range(start, min(start + 1000, args.carts)):
            user = f"U{n:032x}"
            at = NOW - timedelta(hours=3, minutes=rng.randrange(1, 120))
            lines = [{"product_id": f"p{rng.randrange(args.products)}" if rng.random() > 0.02 else f"gone{n}",
                      "variant_id": "v1", "quantity": rng.randrange(1, 4), "price": rng.randrange(1000, 30000)}
                     for _ in range(rng.randrange(1, 5))]
            fields = apply_platform(None, PlatformCart(lines, rng.choice(["cart", "checkout"]), user),
                                    CartClock(at, timedelta(hours=settings.delay_hours)))
            assert fields is not None
            token = secrets.token_hex(16)
            cart = {**fields, "_id": cart_key(shop_id, token), "shop_id": shop_id, "cart_token": token,
                    "created_at": at, "updated_at": at, "version": 1}
            carts.append(cart)
            write = arm(cart, settings, at)
            assert write is not None and write.due_at is not None
            contacts.append({"_id": customer_key(shop_id, user), "shop_id": shop_id, "line_user_id": user,
                             "flows": {"cart": write.fields}, "next_due_at": write.due_at, "v": 1, "claim": None})
            customers.append({"_id": customer_key(shop_id, user), "shop_id": shop_id, "line_user_id": user, "friend": True,
                              "blocked": False, "opted_out": False, "tags": [], "linked": True,
                              "browser_ids": [f"b{n}"], "created_at": at,
                              "totals": {"purchase_count": 0, "total_spend": 0, "first_seen_at": at,
                                         "last_purchase_at": None}})
        await db["customers"].insert_many(customers, ordered=False)
        await db["carts"].insert_many(carts, ordered=False)
        await db["contacts"].insert_many(contacts, ordered=False)
    print(f"seeded {args.carts:,} abandoned carts of {args.carts:,} customers, {args.products:,} products "
          f"in {time.perf_counter() - started:.1f}s", flush=True)


async def write_ceiling(db: Any, shop_id: str, sample: int = 1000) -> float:
    """Messages/s the database alone allows: per message, its share of the claim's `update_many` and its
    contact's settle (one `UpdateOne` in a bulk write), on a scratch copy of the contacts with the same index."""
    from storage.leases import BY_ID, DUE_INDEX

    scratch = db["bench_ceiling_contacts"]
    docs = [doc async for doc in db["contacts"].find({"shop_id": shop_id}).limit(sample)]
    await scratch.insert_many(docs, ordered=False)
    await scratch.create_index(DUE_INDEX, name="contact_due")
    lease = NOW + timedelta(minutes=5)
    t0 = time.perf_counter()
    await scratch.update_many({"next_due_at": {"$lte": NOW}}, [{"$set": {
        "prev_claim": "$claim", "claim": {"$literal": "ceiling"}, "next_due_at": {"$literal": lease}}}],
        hint="contact_due")
    claim = time.perf_counter() - t0
    settles = [UpdateOne({"_id": doc["_id"], "claim": "ceiling", "v": 1}, {
        "$set": {"flows.cart": {**doc["flows"]["cart"], "status": "reminded", "due_at": None},
                 "next_due_at": datetime(9999, 12, 31, tzinfo=UTC), "claim": None, "prev_claim": None},
        "$push": {"sent": {"$each": [{"at": NOW, "flow": "cart"}], "$slice": -60},
                  "log": {"$each": [{"flow": "cart", "key": secrets.token_hex(16), "step": 1, "status": "sent",
                                     "at": NOW, "sent_at": NOW, "cycle": doc["flows"]["cart"]["token"]}],
                          "$slice": -30}}}, hint=BY_ID) for doc in docs]
    t0 = time.perf_counter()
    await scratch.bulk_write(settles, ordered=False)
    settle = time.perf_counter() - t0
    await scratch.drop()
    per_message = (claim + settle) / len(docs)
    print(f"database write ceiling: claim {claim / len(docs) * 1000:.3f} ms + settle {settle / len(docs) * 1000:.3f} ms "
          f"per message → at most {1 / per_message:,.0f} messages/s (the server applies writes one at a time)")
    return 1 / per_message


async def main(args: argparse.Namespace) -> None:
    from core.line_client import LineClients
    from core.settings import Settings
    from delivery.context import JobContext
    from delivery.engine import Engine, EngineConfig
    from flows.listeners import delivery_flows
    from linesim.client import SimClient
    from storage import schema
    from storage.database import Database
    from storage.embedded import server_command
    from storage.shops import LineCredentials, ShopRepository

    print(f"bench_carts: {os.cpu_count()} CPUs; linesim validation {'on' if args.validate else 'off'}")
    with tempfile.TemporaryDirectory(prefix="bench-carts-") as tmp:
        from storage.embedded import free_port

        db_port, sim_port = free_port(), free_port()
        db = await asyncio.create_subprocess_exec(
            *server_command(), "--host", "127.0.0.1", "--port", str(db_port), "--storage-path", f"{tmp}/db",
            "--log-level", "WARNING", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sim = await asyncio.create_subprocess_exec(sys.executable, "-m", "linesim", "--port", str(sim_port),
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await await_port(db_port)
            await await_port(sim_port)
            uri = f"mongodb://127.0.0.1:{db_port}/?directConnection=true"
            sim_url = f"http://127.0.0.1:{sim_port}"
            listener = Commands()
            client: AsyncMongoClient[Any] = AsyncMongoClient(uri, tz_aware=True, event_listeners=[listener])
            database = Database(client=client, db=client["bench"])
            await database.ensure_indexes(schema.INDEXES)
            shop, _ = await ShopRepository(database).create(
                name="bench", timezone="Asia/Tokyo", line=LineCredentials("secret", "tok-" + secrets.token_hex(8)),
                now=NOW)
            await seed(database, shop.shop_id, args)
            ceiling = await write_ceiling(database, shop.shop_id)
            async with SimClient(sim_url) as sim_client:
                await sim_client.config(rate_limits={"push": args.rate}, validate=args.validate,
                                        retry_key_retention=3600)
            settings = Settings(mongodb_uri=uri, line_api_base=sim_url, public_base_url="https://bot.example",
                                line_timeout_seconds=10)
            line = LineClients(sim_url, timeout=10)
            ctx = JobContext(database=database, line=line, settings=settings, worker_id="bench")
            processes = {"engine (this process)": os.getpid(), "linesim": sim.pid, "database server": db.pid}
            cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
            listener.counts.clear()
            listener.enabled = True
            t0 = time.perf_counter()
            summary = await Engine(delivery_flows(settings.public_base)).run(
                ctx, NOW, None, EngineConfig(send_rate=args.rate, concurrency=args.concurrency))
            elapsed = time.perf_counter() - t0
            listener.enabled = False
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
            await line.close()
            sent = summary.get("cart:sent", 0)
            async with SimClient(sim_url) as sim_client:
                received = len(await sim_client.messages(kind="push"))
            trips = sum(listener.counts.values())
            rate = sent / elapsed
            print(f"run: {dict(sorted(summary.items()))}")
            print(f"linesim accepted {received:,} pushes (every one answered)")
            print(f"sent {sent:,} cart reminders in {elapsed:.1f}s = {rate:,.0f}/s")
            print(f"÷ database write ceiling {ceiling:,.0f}/s = {rate / ceiling:.2f}    "
                  f"÷ LINE push limit {args.rate:,.0f}/s = {rate / args.rate:.2f}")
            print(f"database round trips: {trips:,} = {trips / max(sent, 1) * 1000:.1f} per 1,000 messages "
                  f"({dict(listener.counts.most_common())})")
            print("CPU per message: " + ", ".join(
                f"{name} {used / max(sent, 1) * 1000:.2f} ms ({used / elapsed:.0%} of a CPU)"
                for name, used in cpu.items()) + f"; load average {os.getloadavg()[0]:.1f}")
            await client.close()
        finally:
            for child in (sim, db):
                if child.returncode is None:
                    child.terminate()
                    await child.wait()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_carts")
    parser.add_argument("--carts", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=2_000, help="pushes/s: linesim's limit and the engine's pace")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--validate", action="store_true", help="linesim validates every push against the schema")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from core.runtime import tune_garbage_collector

    tune_garbage_collector()  # as the worker runs
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
