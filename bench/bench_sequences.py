"""Step sequences at scale: one engine run sending a step to every customer, and the ingest listener's cost.

Seeds one shop with `--customers` friends, each in a running run of a two-step
sequence (step 1 due now, a filter on the first visit's UTM and on total spend,
a `{display_name}` text) in the shapes the ingest listeners leave (contacts'
`flows.seq:<id>`, carrying the customer's first visit). Then, with linesim in a child process
answering every push:
- reference: the same number of raw pushes through our LINE client (same concurrency), i.e. what the
  LINE stand-in and the client alone allow;
- the engine's run (the code `python -m scheduler run-once` runs): messages/s, ÷ the reference, database
  round trips per 1,000 messages;
- the `browser_events` listener for a linked customer's page view (what the tracking endpoint runs before it
  answers): per call with a page-view-triggered sequence (already entered: the common case) and with none.

    .venv/bin/python -m bench.bench_sequences [--customers 5000] [--concurrency 64] [--views 300] [--profile]

The database is a fresh embedded SecantusDB (or MONGODB_URI).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from bench.common import Commands, bench_database, wait_port

NOW = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)  # a Thursday, 10:00 in Tokyo


SEQUENCE: dict[str, Any] = {
    "name": "bench", "trigger": {"event": "page_view"},
    "steps": [{"wait_minutes": 60, "filter": {"utm": {"source": "instagram"}, "total_spent": {"max": 0}},
               "messages": [{"type": "text", "text": "{display_name}さん、先日はありがとうございました"}]},
              {"wait_minutes": 24 * 60, "messages": [{"type": "text", "text": "2通目"}]}],
}


async def seed(db: Any, shop_id: str, customers: int, gen: str) -> list[str]:
    from flows.sequences.definition import LoadedSequence, SequenceDefinition
    from flows.sequences.entry import Happening, new_run
    from storage.contacts import NEVER

    sequence = LoadedSequence("bench", gen, SequenceDefinition.model_validate(SEQUENCE))
    entered = NOW - timedelta(hours=1)
    users = []
    for start in range(0, customers, 1000):
        people, contacts = [], []
        for n in range(start, min(start + 1000, customers)):
            user = f"U{n:032x}"
            users.append(user)
            key = f"{shop_id}:{user}"
            people.append({"_id": key, "shop_id": shop_id, "line_user_id": user, "friend": True, "blocked": False,
                           "opted_out": False, "tags": [], "linked": True, "browser_ids": [f"b{n}"],
                           "display_name": f"客{n}", "created_at": entered,
                           "totals": {"purchase_count": 0, "total_spend": 0, "first_seen_at": entered}})
            run = new_run(sequence, Happening("page_view", f"ev:{n}", entered, url="https://shop.example/"))
            run["first_visit"] = {"at": entered, "utm": {"source": "instagram"}, "referrer": None}
            contacts.append({"_id": key, "shop_id": shop_id, "line_user_id": user, "flows": {"seq:bench": run},
                             "v": 1, "next_due_at": run["due_at"] or NEVER})
        await db["customers"].insert_many(people, ordered=False)
        await db["contacts"].insert_many(contacts, ordered=False)
    return users


async def main(args: argparse.Namespace, sim_url: str) -> None:
    from core.line_client import LineClients, retry_key_for
    from core.settings import Settings
    from delivery.context import JobContext
    from delivery.engine import Engine, EngineConfig
    from flows.listeners import connect_listeners, delivery_flows
    from linesim.client import SimClient
    from storage import schema
    from storage.database import Database
    from storage.sequences import SequenceRepository
    from storage.shops import LineCredentials, ShopRepository

    async with SimClient(sim_url) as control:
        await control.config(rate_limits={"push": 1_000_000})
    async with bench_database("bench_sequences") as (uri, db_name):
        listener = Commands()
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, tz_aware=True, event_listeners=[listener])
        database = Database(client=client, db=client[db_name])
        connect_listeners(database.signals)
        await database.ensure_indexes(schema.INDEXES)
        token = "tok-" + secrets.token_hex(8)
        shop, _ = await ShopRepository(database).create(
            name="bench", timezone="Asia/Tokyo", line=LineCredentials("secret", token), now=NOW)
        doc, _ = await SequenceRepository(database).put(shop.shop_id, "bench", SEQUENCE, NOW)
        t0 = time.perf_counter()
        users = await seed(database, shop.shop_id, args.customers, doc["gen"])
        print(f"seeded {len(users):,} customers in running runs in {time.perf_counter() - t0:.1f}s", flush=True)

        line = LineClients(sim_url, timeout=10)
        gate = asyncio.Semaphore(args.concurrency)
        push = line.for_token(token)

        async def raw(user: str) -> None:
            async with gate:
                await push.push_json(user, [{"type": "text", "text": "reference"}],
                                     retry_key=retry_key_for("bench-reference", user))

        t0 = time.perf_counter()
        await asyncio.gather(*(raw(user) for user in users))
        reference = len(users) / (time.perf_counter() - t0)
        print(f"reference: {len(users):,} raw pushes through our LINE client to linesim: {reference:,.0f}/s")

        settings = Settings(mongodb_uri=uri, line_api_base=sim_url, public_base_url="https://bot.example")
        ctx = JobContext(database=database, line=line, settings=settings, worker_id="bench")
        listener.enabled = True
        profile = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        if profile is not None:
            profile.enable()
        summary = await Engine(delivery_flows(settings.public_base)).run(
            ctx, NOW, None, EngineConfig(send_rate=1_000_000, concurrency=args.concurrency))
        elapsed = time.perf_counter() - t0
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        listener.enabled = False
        sent = summary.get("sent", 0)
        trips = sum(listener.counts.values())
        async with SimClient(sim_url) as control:
            accepted = [m for m in await control.messages(kind="push") if m["retry_key"] is not None]
        steps = Counter(m["to"] for m in accepted if m["messages"][0]["text"] != "reference")
        print(f"engine run: {summary}; linesim accepted {sum(steps.values()):,} step pushes for "
              f"{len(steps):,} customers (most to one: {max(steps.values(), default=0)})")
        print(f"sent {sent:,} step messages in {elapsed:.2f}s = {sent / elapsed:,.0f}/s "
              f"= {sent / elapsed / reference:.0%} of the reference; database round trips "
              f"{trips / max(sent, 1) * 1000:.1f} per 1,000 messages ({dict(listener.counts.most_common(6))})")

        # The listener on the tracking path: a linked customer's page view, already in the sequence.
        async def views(shop_id: str, count: int) -> float:
            started = time.perf_counter()
            for n in range(count):
                event = {"_id": f"{shop_id}:e{n}", "event_id": f"e{n}", "shop_id": shop_id, "type": "page_view",
                         "browser_id": "b1", "url": "https://shop.example/p", "received_at": NOW,
                         "line_user_id": users[n % len(users)]}
                await database.signals.browser_events.send(database, shop_id, [event], NOW, now=NOW)
            return (time.perf_counter() - started) / count * 1000

        other, _ = await ShopRepository(database).create(
            name="none", timezone="Asia/Tokyo", line=LineCredentials("secret", token), now=NOW)
        # Alternated, so the database's background work (checkpoints after the run) falls on both alike.
        without_runs, with_runs = [], []
        for _ in range(3):
            without_runs.append(await views(other.shop_id, args.views // 3))
            with_runs.append(await views(shop.shop_id, args.views // 3))
        without, with_sequence = min(without_runs), min(with_runs)
        print(f"browser_events signal for one linked page view (outbox intent + every listener), best of 3 "
              f"alternating rounds: {with_sequence:.2f} ms with a page-view sequence the customer is in, "
              f"{without:.2f} ms for a shop with no sequence (+{with_sequence - without:.2f} ms); rounds "
              f"{[round(x, 2) for x in with_runs]} vs {[round(x, 2) for x in without_runs]}")
        await line.close()
        await client.close()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sequences")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--views", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="print where the engine run spends its CPU")
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
        sim.wait(timeout=15)


if __name__ == "__main__":
    cli()
