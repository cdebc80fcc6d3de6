"""Webhook load test: our `/webhook/{shop}` against line-bot-sdk's aiohttp echo bot, with a LINE that answers.

Every process stands apart, so the load generator never starves the app: the
embedded database (SecantusDB, or MONGODB_URI), a LINE stand-in that answers
replies, pushes and profile look-ups as LINE does (`bench.line_stub`), our app,
and the reference - line-bot-sdk's `examples/aiohttp-echo` pattern (parse with
`WebhookParser`, `await reply_message(...)` for each text, then 200), replying
through the same stand-in. This process only generates load and checks.

The load is open-loop at fixed rates (a request is sent on schedule whether or
not earlier ones were answered; latency counts from the scheduled moment), with
a realistic mix: text from new users and from known users (the shop's default
reply is on, so every text is answered), follows (profile look-up + welcome)
and rich-menu postbacks (points). For both bots it prints ack p50/p99 at each
rate, 1 and 5 events per request, and the highest rate whose p99 stays under
50 ms with every request answered 200; for ours also how long after the load
every acknowledged event was handled, how many were answered through LINE, and
database round trips per event (counted by a command listener in the app).

    .venv/bin/python -m bench.bench_webhook [--seconds 6] [--rates 100,300,500] [--per-request 1,5]
                                            [--ladder 100,200,300,400,500,700,1000,1500] [--skip-ladder]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import secrets
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bench import line_stub
from bench.common import Commands, bench_database, run
from linesim import webhook as events
from storage.embedded import free_port
from storage.webhook_events import COLLECTION as BATCHES
from storage.webhook_events import WebhookEventRepository

SHOP_SECRET = "bench-channel-secret"
SHOP_TOKEN = "bench-channel-token"
DEFAULT_REPLY = "お問い合わせありがとうございます。担当者より折り返しご連絡します。"
KNOWN_USERS = 2000
GOAL_MS = 50.0
CLIENT_TIMEOUT = 10.0
# The mix of events a shop sees after a broadcast: chat from new and known users, follows, rich-menu taps.
MIX = (("text_new", 0.40), ("text_known", 0.30), ("follow", 0.15), ("postback", 0.15))


# --- the processes ---------------------------------------------------------------------------------------


def _serve_ours(port: int, uri: str, db_name: str, line_url: str, profile: str | None, unjournaled: bool,
                ready: Any) -> None:
    """Our app, plus `/_bench/db` with the database commands it has sent (a pymongo command listener).

    `unjournaled` swaps the write concern (the client's and the acknowledging writes') for `w: 1, j: false`:
    only to measure what durability costs, never how the app runs.
    """
    from pymongo import WriteConcern, monitoring

    from bot.app import create_app
    from core.settings import Settings

    commands = Commands(enabled=True, by_collection=True)
    monitoring.register(commands)
    if unjournaled:
        import storage.database
        import storage.webhook_events

        setattr(storage.webhook_events, "ACKNOWLEDGED", WriteConcern(w=1, j=False))  # noqa: B010
        setattr(storage.database, "WRITE_CONCERN_W", 1)  # noqa: B010
        setattr(storage.database, "WRITE_CONCERN_JOURNAL", False)  # noqa: B010
    settings = Settings(mongodb_uri=uri, mongodb_db=db_name, line_api_base=line_url, line_data_api_base=line_url,
                        public_base_url="http://bench.test", log_level="WARNING")
    app = create_app(settings)
    from core.runtime import tune_garbage_collector

    tune_garbage_collector()  # as `python -m bot` runs

    async def db_commands(request: web.Request) -> web.Response:
        # Round trips by command and collection, and (as "µs <name>") the time until each answered, summed.
        return web.json_response({**commands.counts, **{f"µs {name}": us for name, us in commands.micros.items()}})

    app.router.add_get("/_bench/db", db_commands)
    _run(app, port, ready, profile)


def _serve_echo(port: int, line_url: str, ready: Any) -> None:
    """line-bot-sdk's `examples/aiohttp-echo` (v3 API): verify + parse, reply to each text inline, then 200."""
    from linebot.v3 import WebhookParser
    from linebot.v3.exceptions import InvalidSignatureError
    from linebot.v3.messaging import AsyncApiClient, AsyncMessagingApi, Configuration, ReplyMessageRequest, TextMessage
    from linebot.v3.webhooks import MessageEvent, TextMessageContent

    parser = WebhookParser(SHOP_SECRET)
    app = web.Application()
    apis: list[AsyncMessagingApi] = []

    async def api_ctx(app: web.Application) -> Any:
        client = AsyncApiClient(Configuration(access_token=SHOP_TOKEN, host=line_url))
        apis.append(AsyncMessagingApi(client))
        yield
        await client.close()

    async def echo(request: web.Request) -> web.Response:
        signature = request.headers["X-Line-Signature"]
        body = await request.text()
        try:
            parsed = parser.parse(body, signature)
        except InvalidSignatureError:
            return web.Response(status=400, text="Invalid signature")
        for event in parsed:
            if not isinstance(event, MessageEvent) or not isinstance(event.message, TextMessageContent):
                continue
            await apis[0].reply_message(
                ReplyMessageRequest(reply_token=event.reply_token, messages=[TextMessage(text=event.message.text)])
            )
        return web.Response(text="OK\n")

    app.cleanup_ctx.append(api_ctx)
    app.router.add_post("/callback", echo)
    _run(app, port, ready)


def _run(app: web.Application, port: int, ready: Any, profile: str | None = None) -> None:
    """Serve until SIGTERM; with `profile`, under cProfile, the statistics written to that file at the end."""
    import cProfile
    import logging
    import signal
    import time
    import warnings

    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU time: honest on a shared machine
    if profiler is not None:
        profiler.enable()
    try:
        asyncio.run(main())
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))


# --- the load ----------------------------------------------------------------------------------------------


@dataclass
class Population:
    known: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(15))

    def event(self) -> dict[str, Any]:
        kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "text_new":
            return events.text_message_event("U" + secrets.token_hex(16), "こんにちは、在庫はありますか？")
        if kind == "text_known":
            return events.text_message_event(self.rng.choice(self.known), "注文の件で質問です")
        if kind == "follow":
            return events.follow_event("U" + secrets.token_hex(16))
        return events.postback_event(self.rng.choice(self.known), "v=1&a=points")


def _bodies(population: Population, count: int, per_request: int) -> list[tuple[bytes, str, int]]:
    out = []
    for _ in range(count):
        batch = [population.event() for _ in range(per_request)]
        texts = sum(1 for e in batch if e["type"] == "message")
        body = events.webhook_body(batch)
        out.append((body, events.sign(body, SHOP_SECRET), texts))
    return out


@dataclass
class Run:
    offered: float  # events/s offered
    per_request: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    acked_events: int
    acked_texts: int
    elapsed: float

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else float("nan")

    @property
    def achieved(self) -> float:
        return self.acked_events / self.seconds

    @property
    def refused(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def meets_goal(self) -> bool:
        return self.refused == 0 and self.p99_ms < GOAL_MS


async def paced(url: str, population: Population, rate: float, seconds: float, per_request: int) -> Run:
    """Open loop: request i is sent at start + i * per_request / rate; latency counts from that moment."""
    interval = per_request / rate
    total = max(1, int(seconds / interval))
    bodies = _bodies(population, total, per_request)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    acked = [0, 0]
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def one(index: int, start: float) -> None:
            scheduled = start + index * interval
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            body, signature, texts = bodies[index]
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                                 "X-Line-Signature": signature}) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 599
            latencies.append(time.perf_counter() - scheduled)
            statuses[status] += 1
            if status == 200:
                acked[0] += per_request
                acked[1] += texts

        start = time.perf_counter() + 0.05
        await asyncio.gather(*(one(i, start) for i in range(total)))
        elapsed = time.perf_counter() - start
    return Run(rate, per_request, total * interval, latencies, statuses, acked[0], acked[1], elapsed)


# --- checks ------------------------------------------------------------------------------------------------


async def _json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


async def _post(url: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(url) as response:
        await response.read()


@dataclass
class Drain:
    stored: int
    unhandled: int
    seconds: float
    answers: int
    db_commands: Counter[str]


async def _stored(database: Any) -> int:
    """Events stored so far (the benchmark's one shop): the keys of every stored batch."""
    return sum([len(doc["keys"]) async for doc in database[BATCHES].find({}, {"keys": 1})])


async def wait_handled(database: Any, shop_id: str, before: int, acked: int, stub_url: str, ours_url: str,
                       commands_before: Counter[str], timeout: float = 120) -> Drain:
    """Wait until every acknowledged event is stored and no longer 'handling'; time it from the end of the load."""
    started = time.perf_counter()
    repository = WebhookEventRepository(database)
    while True:  # polled through the recovery index (one shop per run), cheap while the app works
        unhandled = await repository.waiting()
        if unhandled == 0 or time.perf_counter() - started > timeout:
            stored = await _stored(database) - before
            if stored >= acked or time.perf_counter() - started > timeout:
                break
        await asyncio.sleep(0.05)
    waited = time.perf_counter() - started
    counts = await _json(stub_url + "/_stub/counts")
    commands = Counter(await _json(ours_url + "/_bench/db"))
    commands.subtract(commands_before)
    return Drain(stored, unhandled, waited, int(counts.get("reply", 0)) + int(counts.get("push", 0)), commands)


def _row(name: str, run: Run) -> str:
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(run.statuses.items()) if status != 200)
    return (f"  {name:<6} {run.offered:>6.0f} ev/s x{run.per_request}  ack p50 {run.p50_ms:>8.1f} ms  "
            f"p99 {run.p99_ms:>8.1f} ms  achieved {run.achieved:>6.0f} ev/s  "
            f"{'all 200' if not statuses else 'non-200 ' + statuses}")


def _round_trips(commands: Counter[str], handled: int) -> str:
    """Round trips per event, the most frequent statements, and the slowest on average as the app saw them
    (queueing behind other clients' writes included: what holds up whom)."""
    counts = Counter({name: n for name, n in commands.items() if not name.startswith("µs ") and n > 0})
    total = sum(counts.values())
    top = ", ".join(f"{name} {n / max(1, handled):.2f}" for name, n in counts.most_common(6))
    mean_ms = {name: commands.get(f"µs {name}", 0) / n / 1000 for name, n in counts.items()}
    slowest = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(mean_ms.items(), key=lambda kv: -kv[1])[:4])
    return (f"{total / max(1, handled):.2f} database round trips/event ({top}); "
            f"slowest on average, ms: {slowest}")


# --- the run -----------------------------------------------------------------------------------------------


async def _prepare(uri: str, db_name: str) -> tuple[str, Any, list[str]]:
    from core.clock import SystemClock
    from storage.customers import new_customer_fields
    from storage.database import connect
    from storage.shop_settings import MessagingSettings, ShopSettingsRepository
    from storage.shops import LineCredentials, ShopRepository

    database = connect(uri, db_name)
    now = SystemClock().now()
    shop, _ = await ShopRepository(database).create(
        name="bench", timezone="Asia/Tokyo", line=LineCredentials(SHOP_SECRET, SHOP_TOKEN), now=now
    )
    await ShopSettingsRepository(database).put(shop.shop_id, MessagingSettings(default_reply=DEFAULT_REPLY), now)
    known = ["U" + secrets.token_hex(16) for _ in range(KNOWN_USERS)]
    docs = []
    for user in known:
        doc = new_customer_fields(shop.shop_id, user, now)
        doc.update({"_id": f"{shop.shop_id}:{user}", "friend": True, "display_name": "常連さん", "followed_at": now})
        docs.append(doc)
    await database["customers"].insert_many(docs)
    return shop.shop_id, database, known


def _start(target: Any, *args: Any) -> tuple[Any, Any]:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=target, args=(*args, ready), daemon=True)
    process.start()
    return process, ready


async def bench(args: argparse.Namespace) -> None:
    async with bench_database("bench_webhook") as (uri, db_name):
        await _bench(args, uri, db_name)


async def _bench(args: argparse.Namespace, uri: str, db_name: str) -> None:
    stub_port, ours_port, echo_port = free_port(), free_port(), free_port()
    stub_url = f"http://127.0.0.1:{stub_port}"
    processes = [
        _start(line_stub.serve, stub_port),
        _start(_serve_ours, ours_port, uri, db_name, stub_url, args.profile, args.unjournaled),
        _start(_serve_echo, echo_port, stub_url),
    ]
    database = None
    try:
        shop_id, database, known = await _prepare(uri, db_name)
        for _, ready in processes:
            if not await asyncio.to_thread(ready.wait, 60):
                raise RuntimeError("a server did not start")
        ours_base = f"http://127.0.0.1:{ours_port}"
        targets = {"ours": f"{ours_base}/webhook/{shop_id}", "echo": f"http://127.0.0.1:{echo_port}/callback"}
        population = Population(known)
        for url in targets.values():  # warm-up: connections, caches, the first customers
            await paced(url, population, 50, 1, 1)
        counted = await _stored(database)
        await wait_handled(database, shop_id, 0, counted, stub_url, ours_base, Counter())

        print(f"webhook benchmark: {os.cpu_count()} CPUs, loopback; database: {'MONGODB_URI' if os.environ.get('MONGODB_URI') else 'embedded SecantusDB'};"
              f" LINE: answering stand-in (bench.line_stub); mix: " + ", ".join(f"{k} {w:.0%}" for k, w in MIX))
        print(f"open loop, {args.seconds:.0f} s per run, latency from the scheduled send; "
              f"'achieved' = events acknowledged with 200 per second")

        async def ours(rate: float, per_request: int) -> tuple[Run, Drain]:
            before = await _stored(database)
            commands = Counter(await _json(ours_base + "/_bench/db"))
            await _post(stub_url + "/_stub/reset")
            run = await paced(targets["ours"], population, rate, args.seconds, per_request)
            drain = await wait_handled(database, shop_id, before, run.acked_events, stub_url, ours_base, commands)
            return run, drain

        def report_drain(run: Run, drain: Drain) -> None:
            print(f"         stored {drain.stored} of {run.acked_events} acknowledged; all handled "
                  f"{drain.seconds:.1f} s after the load ({drain.unhandled} unhandled); answered through LINE "
                  f"{drain.answers} of {drain.stored}; {_round_trips(drain.db_commands, drain.stored)}")

        for per_request in args.per_request:
            for rate in args.rates:
                run, drain = await ours(rate, per_request)
                print(_row("ours", run))
                report_drain(run, drain)
                await _post(stub_url + "/_stub/reset")
                echo = await paced(targets["echo"], population, rate, args.seconds, per_request)
                await asyncio.sleep(2)  # requests the client gave up on may still be replying
                answered = (await _json(stub_url + "/_stub/counts")).get("reply", 0)
                print(_row("echo", echo) + f"  (replied {answered} of {echo.acked_texts} texts)")

        if args.skip_ladder:
            return
        print(f"rising load, 1 event/request: the highest rate with p99 < {GOAL_MS:.0f} ms and every request 200")
        best: dict[str, float] = {"ours": 0.0, "echo": 0.0}
        for name in ("ours", "echo"):
            misses = 0
            for rate in args.ladder:
                if name == "ours":
                    run, drain = await ours(rate, 1)
                    print(_row(name, run))
                    report_drain(run, drain)
                else:
                    run = await paced(targets["echo"], population, rate, args.seconds, 1)
                    print(_row(name, run))
                if run.meets_goal:
                    best[name] = rate
                else:
                    misses += 1
                    if misses >= args.misses:
                        break
                await asyncio.sleep(1)
        ratio = best["ours"] / best["echo"] if best["echo"] else float("inf")
        print(f"highest rate with p99 < {GOAL_MS:.0f} ms: ours {best['ours']:.0f} ev/s, echo {best['echo']:.0f} ev/s "
              f"(ours/echo {ratio:.2f}x)")
    finally:
        for process, _ in processes:
            process.terminate()
            process.join(30)
        if database is not None:
            await database.close()


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_webhook", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6, help="length of each run (default 6)")
    parser.add_argument("--rates", type=_floats, default=[100, 300, 500], help="events/s (default 100,300,500)")
    parser.add_argument("--per-request", type=lambda t: [int(p) for p in t.split(",")], default=[1, 5],
                        help="events per request (default 1,5)")
    parser.add_argument("--ladder", type=_floats, default=[100, 200, 300, 400, 500, 600, 800, 1000, 1300, 1600],
                        help="rates tried for the highest rate under the goal (1 event/request)")
    parser.add_argument("--misses", type=int, default=2, help="stop the ladder after this many misses (default 2)")
    parser.add_argument("--skip-ladder", action="store_true", help="only the fixed rates")
    parser.add_argument("--profile", metavar="FILE", help="run our app under cProfile; statistics to FILE")
    parser.add_argument("--unjournaled", action="store_true",
                        help="acknowledge after w:1, j:false writes (to measure what durability costs)")
    run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
