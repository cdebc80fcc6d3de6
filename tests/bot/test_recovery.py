"""A crash between "stored" and "handled" is recovered: at start-up, and after a failed attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.replies import response_retry_key
from bot.typedefs import DATABASE, LINE
from core.clock import FixedClock
from core.settings import Settings
from linesim import webhook as events
from linesim.client import SimClient
from storage.database import connect
from storage.webhook_events import LEASE, MAX_ATTEMPTS, AnswerPlan, WebhookEventRepository
from tests.bot.conftest import USER, recover, settle
from tests.conftest import ShopHandle


async def test_events_stored_before_a_crash_are_handled_at_start_up_once(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, settings: Settings, clock: FixedClock,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    # The "crashed" process stored the event and died before handling it.
    database = connect(settings.mongodb_uri or "", settings.mongodb_db)
    try:
        stored = await WebhookEventRepository(database).store(
            shop.shop_id, [events.text_message_event(USER, "配信停止")], clock.now() - LEASE - timedelta(seconds=1)
        )
    finally:
        await database.close()
    assert len(stored.new) == 1

    restarted = await aiohttp_client(create_app(settings, clock=clock))  # start-up runs the recovery
    for _ in range(100):
        doc = await WebhookEventRepository(restarted.app[DATABASE]).get(shop.shop_id, stored.new[0]["webhook_event_id"])
        if doc and doc["state"] == "done":
            break
        await settle(restarted.app)
        await asyncio.sleep(0.02)
    assert doc is not None and doc["state"] == "done" and doc["attempts"] == 2 and doc["responded_at"]
    sent = await sim.messages(to=USER)
    # The reply token is long stale: the answer is pushed, keyed by the event, so it can only arrive once.
    assert [m["kind"] for m in sent] == ["push"] and "配信を停止しました" in sent[0]["messages"][0]["text"]

    clock.advance(LEASE * 2)
    app = restarted.app
    assert await recover(app) == 0
    assert len(await sim.messages(to=USER)) == 1


async def test_a_failed_handling_is_retried_later_without_a_second_message(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, clock: FixedClock
) -> None:
    await sim.faults("profile", status=403, count=1)  # LINE refuses while we handle the follow
    bot_url = str(client.make_url("/webhook/" + shop.shop_id))
    answer = await sim.webhook(bot_url, shop.channel_secret, event={"type": "follow", "user_id": USER})
    assert answer["status"] == 200  # stored and acknowledged anyway
    app = client.app
    await settle(app)
    repository = WebhookEventRepository(app[DATABASE])
    event_id = answer["events"][0]["webhookEventId"]
    doc = await repository.get(shop.shop_id, event_id)
    assert doc is not None and doc["state"] == "handling" and doc["outcome"] == "error"
    assert await sim.messages(to=USER) == []

    await sim.clear_faults()
    clock.advance(timedelta(minutes=1))
    assert await recover(app) == 1
    doc = await repository.get(shop.shop_id, event_id)
    assert doc is not None and doc["state"] == "done" and doc["attempts"] == 2
    assert [m["kind"] for m in await sim.messages(to=USER)] == ["push"]


async def test_an_event_that_keeps_failing_is_given_up_after_its_attempts(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, clock: FixedClock
) -> None:
    app = client.app
    repository = WebhookEventRepository(app[DATABASE])
    stored = await repository.store(shop.shop_id, [events.text_message_event(USER, "配信停止")], clock.now())
    await app[DATABASE]["webhook_batches"].update_one({"_id": stored.new[0]["batch"]},
                                                      {"$set": {"attempts": MAX_ATTEMPTS}})
    clock.advance(LEASE * 2)
    assert await recover(app) == 0
    doc = await repository.get(shop.shop_id, stored.new[0]["webhook_event_id"])
    assert doc is not None and doc["state"] == "failed"
    assert await sim.messages(to=USER) == []


async def test_a_crash_after_an_answer_was_marked_never_repeats_a_reply(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, clock: FixedClock
) -> None:
    """Died between "about to reply" and "replied": the reply may have gone out and has no retry key."""
    app = client.app
    repository = WebhookEventRepository(app[DATABASE])
    stored = await repository.store(shop.shop_id, [events.text_message_event(USER, "配信停止")], clock.now())
    await repository.mark_answering([AnswerPlan.of(stored.new[0], "reply")], clock.now())
    clock.advance(LEASE * 2)
    assert await recover(app) == 1
    doc = await repository.get(shop.shop_id, stored.new[0]["webhook_event_id"])
    assert doc is not None and doc["state"] == "done"
    assert await sim.messages(to=USER) == []
    customer = await app[DATABASE]["customers"].find_one({"_id": f"{shop.shop_id}:{USER}"})
    assert customer is not None and customer["opted_out"] is True  # the customer's change is made again


async def test_a_crash_after_an_answer_was_marked_pushes_again_under_the_same_key(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, clock: FixedClock
) -> None:
    """Died after pushing but before recording it: the push is repeated with its retry key, LINE drops it."""
    app = client.app
    repository = WebhookEventRepository(app[DATABASE])
    event = events.text_message_event(USER, "配信停止")
    stored = await repository.store(shop.shop_id, [event], clock.now())
    await repository.mark_answering([AnswerPlan.of(stored.new[0], "push")], clock.now())
    line = app[LINE].for_token(shop.channel_access_token)
    await line.push_json(USER, [{"type": "text", "text": "配信を停止しました"}],
                         retry_key=response_retry_key(shop.shop_id, event["webhookEventId"]))
    clock.advance(LEASE * 2)
    assert await recover(app) == 1
    doc = await repository.get(shop.shop_id, event["webhookEventId"])
    assert doc is not None and doc["state"] == "done" and doc["responded_at"]
    assert [m["kind"] for m in await sim.messages(to=USER)] == ["push"]  # the repeat was a 409: one message


async def test_an_answer_line_refused_is_sent_on_the_retry(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, clock: FixedClock, bot_url: str
) -> None:
    await sim.faults("reply", status=500, count=1)  # LINE answered: the reply surely did not go out
    answer = await sim.webhook(bot_url, shop.channel_secret, event={"type": "text", "user_id": USER, "text": "配信停止"})
    assert answer["status"] == 200
    app = client.app
    await settle(app)
    repository = WebhookEventRepository(app[DATABASE])
    event_id = answer["events"][0]["webhookEventId"]
    doc = await repository.get(shop.shop_id, event_id)
    assert doc is not None and doc["state"] == "handling" and doc["outcome"] == "error"
    assert doc["answering"] is None
    clock.advance(timedelta(minutes=1))
    assert await recover(app) == 1
    assert [m["kind"] for m in await sim.messages(to=USER)] == ["push"]
