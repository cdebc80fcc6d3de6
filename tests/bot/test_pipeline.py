"""The acknowledgement never waits for handling; a full pipeline answers 503 and loses nothing acknowledged;
batches keep each customer's events in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot import webhook
from bot.app import create_app
from bot.handling import ROUTER
from bot.router import EventContext, Outcome
from bot.typedefs import DATABASE as DATABASE_KEY
from bot.typedefs import LINE as LINE_KEY
from bot.typedefs import WEBHOOK_PIPELINE
from core.clock import FixedClock
from core.settings import Settings
from linesim import webhook as events
from linesim.client import SimClient
from storage.database import Database
from storage.webhook_events import LEASE, WebhookEventRepository
from tests.bot.conftest import settle
from tests.conftest import ShopHandle

SAFETY_SECONDS = 30  # only so a broken pipeline fails the test instead of hanging it; not a latency budget


def _user(n: int) -> str:
    return "U" + f"{n:032x}"


class Gate:
    """Holds every handling batch until opened: a handler blocked on an event."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.opened = asyncio.Event()
        self.entered = 0
        pipeline = client.app[WEBHOOK_PIPELINE]
        handle = pipeline.handle

        async def stalled(shop: Any, docs: list[dict[str, Any]]) -> None:
            self.entered += 1
            await self.opened.wait()
            await handle(shop, docs)

        pipeline.handle = stalled


@pytest.fixture
def small_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_queue_max": 4, "webhook_workers": 1})


@pytest.fixture
async def small_client(aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], small_settings: Settings,
                       clock: FixedClock) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(small_settings, clock=clock))


async def test_acknowledgement_does_not_wait_for_a_stalled_handler(
    client: TestClient[Any, Any], sim: SimClient, shop: ShopHandle, bot_url: str, db: Database
) -> None:
    gate = Gate(client)
    sends = [sim.webhook(bot_url, shop.channel_secret, event={"type": "text", "user_id": _user(n), "text": "配信停止"})
             for n in range(12)]
    # Every 200 arrives while the handler is still blocked: the acknowledgement waited for storing only.
    answers = await asyncio.wait_for(asyncio.gather(*sends), SAFETY_SECONDS)
    assert [answer["status"] for answer in answers] == [200] * 12
    assert gate.entered >= 1 and not gate.opened.is_set()
    assert await WebhookEventRepository(db).count(shop.shop_id, "handling") == 12
    assert await sim.messages() == []

    gate.opened.set()
    await settle(client.app)
    assert await WebhookEventRepository(db).count(shop.shop_id, "done") == 12
    sent = await sim.messages()
    assert sorted(m["to"] for m in sent) == sorted(_user(n) for n in range(12))
    assert {m["kind"] for m in sent} == {"reply"}
    assert await db["customers"].count_documents({"shop_id": shop.shop_id, "opted_out": True}) == 12


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll a state until it holds (bounded by SAFETY_SECONDS: a hang fails, it is not a latency budget)."""
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), SAFETY_SECONDS)


async def test_a_handler_blocked_on_one_event_delays_neither_acknowledgements_nor_the_other_workers(
    client: TestClient[Any, Any], sim: SimClient, shop: ShopHandle, bot_url: str, db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real handler (the router's dispatch) blocks on one customer's event, as one stuck on a slow call would."""
    release = asyncio.Event()
    entered = asyncio.Event()
    dispatch = ROUTER.dispatch

    async def blocking(ctx: EventContext) -> Outcome:
        if (ctx.event.get("message") or {}).get("text") == "ちょっと待って":
            entered.set()
            await release.wait()
        return await dispatch(ctx)

    monkeypatch.setattr(ROUTER, "dispatch", blocking)
    stuck = _user(500)
    first = await sim.webhook(bot_url, shop.channel_secret, event={"type": "text", "user_id": stuck,
                                                                   "text": "ちょっと待って"})
    assert first["status"] == 200
    await asyncio.wait_for(entered.wait(), SAFETY_SECONDS)

    others = [_user(600 + n) for n in range(12)]
    answers = await asyncio.wait_for(asyncio.gather(*(
        sim.webhook(bot_url, shop.channel_secret, event={"type": "text", "user_id": user, "text": "配信停止"})
        for user in others)), SAFETY_SECONDS)
    assert [answer["status"] for answer in answers] == [200] * 12  # acknowledged while the handler is blocked

    pipeline = client.app[WEBHOOK_PIPELINE]
    free = [user for user in others if pipeline.lane(shop.shop_id, user) != pipeline.lane(shop.shop_id, stuck)]
    behind = [user for user in others if user not in free]
    assert free and behind  # the fixed IDs spread over the workers: both kinds are exercised

    async def free_handled() -> bool:
        return await db["customers"].count_documents(
            {"shop_id": shop.shop_id, "line_user_id": {"$in": free}, "opted_out": True}) == len(free)

    await _until(free_handled)  # the other workers went on handling meanwhile
    repository = WebhookEventRepository(db)
    stuck_event = await repository.get(shop.shop_id, first["events"][0]["webhookEventId"])
    assert stuck_event is not None and stuck_event["state"] == "handling" and not release.is_set()
    assert await sim.messages(to=stuck) == []

    release.set()
    await settle(client.app)
    assert await WebhookEventRepository(db).count(shop.shop_id, "done") == 13
    assert await db["customers"].count_documents({"shop_id": shop.shop_id, "opted_out": True}) == 12
    for user in others:
        assert len(await sim.messages(to=user)) == 1


async def test_a_full_pipeline_answers_503_and_loses_nothing_acknowledged(
    small_client: TestClient[Any, Any], sim: SimClient, make_shop: Callable[..., Awaitable[ShopHandle]]
) -> None:
    client = small_client
    shop = await make_shop()
    bot_url = str(client.make_url("/webhook/" + shop.shop_id))
    gate = Gate(client)
    answers = []
    for n in range(7):  # room for 4 events, queued or in hand (the stalled worker holds the first)
        answers.append(await asyncio.wait_for(
            sim.webhook(bot_url, shop.channel_secret, event={"type": "text", "user_id": _user(n), "text": "配信停止"}),
            SAFETY_SECONDS))
    statuses = [answer["status"] for answer in answers]
    assert statuses[:4] == [200] * 4 and statuses[4:] == [503] * 3
    assert all(answer["body"]["error"]["code"] == "unavailable" for answer in answers[4:])
    repository = WebhookEventRepository(client.app[DATABASE_KEY])
    refused = [answer["events"][0]["webhookEventId"] for answer in answers[4:]]
    for event_id in refused:  # a 503 stores nothing: LINE's redelivery is the only copy
        assert await repository.get(shop.shop_id, event_id) is None

    gate.opened.set()
    await settle(client.app)
    # LINE redelivers what we refused; now there is room.
    redelivered = await sim.webhook(bot_url, shop.channel_secret, redeliver=refused)
    assert redelivered["status"] == 200
    await settle(client.app)
    database = client.app[DATABASE_KEY]
    assert await WebhookEventRepository(database).count(shop.shop_id, "done") == 7
    sent = await sim.messages()
    assert sorted(m["to"] for m in sent) == sorted(_user(n) for n in range(7))  # each answered exactly once


async def test_batches_keep_each_customers_events_in_order(
    client: TestClient[Any, Any], sim: SimClient, shop: ShopHandle, bot_url: str, db: Database
) -> None:
    gate = Gate(client)
    texts = ["配信停止", "配信再開"] * 3
    users = [_user(100 + n) for n in range(4)]
    requests = []
    for user_index, user in enumerate(users):
        timeline = [events.text_message_event(user, text, ts=1_000 + 10 * step + user_index)
                    for step, text in enumerate(texts)]
        # Several requests per customer, and inside a request LINE's order may differ from the timestamps.
        requests += [[timeline[1], timeline[0]], [timeline[2]], [timeline[4], timeline[3], timeline[5]]]
    for batch in requests:
        answer = await sim.webhook(bot_url, shop.channel_secret, events=batch)
        assert answer["status"] == 200
    gate.opened.set()
    await settle(client.app)
    for user in users:
        answered = [m["messages"][0]["text"][:8] for m in await sim.messages(to=user)]
        assert answered == [("お知らせの配信を停止しました" if t == "配信停止" else "お知らせの配信を再開しました")[:8]
                            for t in texts]
        customer = await db["customers"].find_one({"_id": f"{shop.shop_id}:{user}"})
        assert customer is not None and customer["opted_out"] is False  # the last event wins


async def test_the_customer_change_is_stored_before_its_confirmation_goes_out(
    client: TestClient[Any, Any], sim: SimClient, shop: ShopHandle, bot_url: str, db: Database
) -> None:
    seen: list[bool] = []
    line = client.app[LINE_KEY].for_token(shop.channel_access_token)
    reply_json = line.reply_json

    async def spy(token: str, messages: Any) -> Any:
        customer = await db["customers"].find_one({"_id": f"{shop.shop_id}:{_user(7)}"})
        seen.append(bool(customer and customer["opted_out"]))
        return await reply_json(token, messages)

    line.reply_json = spy
    await sim.webhook(bot_url, shop.channel_secret, event={"type": "text", "user_id": _user(7), "text": "配信停止"})
    await settle(client.app)
    assert seen == [True]


async def test_what_a_stopping_process_acknowledged_but_never_handled_is_handled_after_the_restart(
    small_client: TestClient[Any, Any], sim: SimClient, make_shop: Callable[..., Awaitable[ShopHandle]],
    small_settings: Settings, clock: FixedClock, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Full and stalled when the process stops: the queued events are handed back, the one in hand keeps its
    lease; a new process handles every acknowledged event exactly once, LINE redelivers the refused ones."""
    monkeypatch.setattr(webhook, "SHUTDOWN_GRACE_SECONDS", 0.2)
    shop = await make_shop()
    bot_url = str(small_client.make_url("/webhook/" + shop.shop_id))
    Gate(small_client)  # never opened: the worker is stuck until the process stops
    users = [_user(900 + n) for n in range(7)]
    answers = [await asyncio.wait_for(sim.webhook(bot_url, shop.channel_secret,
                                                  event={"type": "text", "user_id": user, "text": "配信停止"}),
                                      SAFETY_SECONDS) for user in users]
    assert [answer["status"] for answer in answers] == [200] * 4 + [503] * 3
    await small_client.close()  # graceful stop: the pipeline is drained for its grace, then handed back

    acknowledged = [answer["events"][0]["webhookEventId"] for answer in answers[:4]]
    refused = [answer["events"][0]["webhookEventId"] for answer in answers[4:]]
    clock.advance(LEASE + timedelta(seconds=1))  # the batch that was in hand keeps its lease until then
    restarted = await aiohttp_client(create_app(small_settings, clock=clock))  # start-up recovery
    repository = WebhookEventRepository(restarted.app[DATABASE_KEY])

    async def all_done() -> bool:
        docs = [await repository.get(shop.shop_id, event_id) for event_id in acknowledged]
        return all(doc is not None and doc["state"] == "done" for doc in docs)

    await _until(all_done)
    for event_id in refused:
        assert await repository.get(shop.shop_id, event_id) is None
    redelivered = await sim.webhook(str(restarted.make_url("/webhook/" + shop.shop_id)), shop.channel_secret,
                                    redeliver=refused)
    assert redelivered["status"] == 200
    await settle(restarted.app)
    db = restarted.app[DATABASE_KEY]
    assert await WebhookEventRepository(db).count(shop.shop_id, "done") == 7
    assert await db["customers"].count_documents({"shop_id": shop.shop_id, "opted_out": True}) == 7
    for user in users:
        assert len(await sim.messages(to=user)) == 1  # answered once: neither lost nor repeated
