"""The webhook route end to end: linesim signs and posts events, the real app stores and handles them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from bot.webhook import signature_for
from linesim import webhook as events
from linesim.client import SimClient
from storage.database import Database
from storage.webhook_events import WebhookEventRepository
from tests.bot.conftest import USER, settle
from tests.conftest import ShopHandle

Play = Callable[..., Awaitable[dict[str, Any]]]


async def _post(client: TestClient[Any, Any], shop_id: str, body: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["x-line-signature"] = signature
    return await client.post(f"/webhook/{shop_id}", data=body, headers=headers)


async def test_follow_gets_the_welcome_and_the_profile_is_stored(
    play: Play, sim: SimClient, db: Database, shop: ShopHandle
) -> None:
    await sim.add_user(USER, display_name="山田花子", language="ja")
    answer = await play({"type": "follow", "user_id": USER})
    assert answer["status"] == 200
    sent = await sim.messages(to=USER)
    assert [m["kind"] for m in sent] == ["reply"]
    (message,) = sent[0]["messages"]
    assert message["type"] == "flex" and "友だち追加ありがとうございます" in message["altText"]
    button = message["contents"]["footer"]["contents"][0]["action"]
    assert button["uri"] == f"http://shop-bot.test/l/{shop.shop_id}"
    customer = await db["customers"].find_one({"_id": f"{shop.shop_id}:{USER}"})
    assert customer is not None
    assert customer["friend"] is True and customer["blocked"] is False and customer["is_unblocked"] is False
    assert customer["display_name"] == "山田花子" and customer["language"] == "ja"
    stored = await WebhookEventRepository(db).get(shop.shop_id, answer["events"][0]["webhookEventId"])
    assert stored is not None and stored["state"] == "done" and stored["outcome"] == "follow.on_follow"


async def test_verification_request_with_no_events_answers_200(
    client: TestClient[Any, Any], shop: ShopHandle, db: Database
) -> None:
    body = b'{"destination":"U0","events":[]}'
    response = await _post(client, shop.shop_id, body, signature_for(body, shop.channel_secret))
    assert response.status == 200
    assert await WebhookEventRepository(db).count(shop.shop_id) == 0


async def test_bad_or_missing_signature_stores_nothing(
    client: TestClient[Any, Any], shop: ShopHandle, db: Database
) -> None:
    body = events.webhook_body([events.follow_event(USER)])
    wrong = await _post(client, shop.shop_id, body, signature_for(body, "not-the-secret"))
    assert wrong.status == 401
    assert (await wrong.json())["error"]["code"] == "invalid_signature"
    missing = await _post(client, shop.shop_id, body, None)
    assert missing.status == 400
    assert (await missing.json())["error"]["field"] == "x-line-signature"
    garbage = await _post(client, shop.shop_id, body, "日本語")
    assert garbage.status == 401
    tampered = body.replace(b"follow", b"unfollow", 1)
    assert (await _post(client, shop.shop_id, tampered, signature_for(body, shop.channel_secret))).status == 401
    await settle(client.app)
    assert await WebhookEventRepository(db).count(shop.shop_id) == 0
    assert await db["customers"].count_documents({}) == 0


async def test_unknown_shop_is_404(client: TestClient[Any, Any]) -> None:
    body = b'{"events":[]}'
    assert (await _post(client, "shp_nope", body, signature_for(body, "x"))).status == 404
    assert (await _post(client, "bad%20id", body, signature_for(body, "x"))).status == 404


async def test_malformed_bodies_are_400_and_store_nothing(
    client: TestClient[Any, Any], shop: ShopHandle, db: Database
) -> None:
    no_id = events.follow_event(USER)
    del no_id["webhookEventId"]
    for body, field in (
        (b"{not json", None),
        (b'["events"]', "body"),
        (b'{"destination":"U0"}', "events"),
        (json.dumps({"events": [events.follow_event(USER), no_id]}).encode(), "events[1].webhookEventId"),
        (json.dumps({"events": [{**events.follow_event(USER), "timestamp": "soon"}]}).encode(), "events[0].timestamp"),
    ):
        response = await _post(client, shop.shop_id, body, signature_for(body, shop.channel_secret))
        assert response.status == 400, body
        error = (await response.json())["error"]
        if field is not None:
            assert error["field"] == field
    assert await WebhookEventRepository(db).count(shop.shop_id) == 0


async def test_redelivered_and_duplicate_events_are_handled_once(
    play: Play, sim: SimClient, db: Database, shop: ShopHandle
) -> None:
    first = await play({"type": "text", "user_id": USER, "text": "配信停止"})
    event = first["events"][0]
    await play(redeliver=[event["webhookEventId"]])  # LINE's redelivery: same id and reply token
    await play(event, event)  # the very same event twice in one request, and again
    sent = await sim.messages(to=USER)
    assert len(sent) == 1 and sent[0]["kind"] == "reply"
    assert "配信を停止しました" in sent[0]["messages"][0]["text"]
    assert await WebhookEventRepository(db).count(shop.shop_id) == 1


async def test_stale_reply_token_falls_back_to_one_push(
    client: TestClient[Any, Any], sim: SimClient, shop: ShopHandle
) -> None:
    """A reply token LINE does not accept (expired/used): the answer is pushed, with the event's retry key."""
    event = events.text_message_event(USER, "配信再開")  # token never issued by linesim
    body = events.webhook_body([event])
    response = await _post(client, shop.shop_id, body, signature_for(body, shop.channel_secret))
    assert response.status == 200
    await settle(client.app)
    sent = await sim.messages(to=USER)
    assert [m["kind"] for m in sent] == ["push"]
    assert sent[0]["retry_key"] and "配信を再開しました" in sent[0]["messages"][0]["text"]


async def test_events_are_handled_in_timestamp_order(play: Play, sim: SimClient, db: Database,
                                                      shop: ShopHandle) -> None:
    opt_out = events.text_message_event(USER, "配信停止", ts=1_000)
    opt_in = events.text_message_event(USER, "配信再開", ts=2_000)
    await play(opt_in, opt_out)  # LINE may deliver out of order
    customer = await db["customers"].find_one({"_id": f"{shop.shop_id}:{USER}"})
    assert customer is not None and customer["opted_out"] is False


async def test_a_changed_channel_secret_works_at_once_despite_the_shop_cache(
    client: TestClient[Any, Any], shop: ShopHandle, db: Database
) -> None:
    body = events.webhook_body([events.follow_event(USER)])
    assert (await _post(client, shop.shop_id, body, signature_for(body, shop.channel_secret))).status == 200  # cached
    changed = await client.patch(f"/admin/api/v1/shops/{shop.shop_id}", json={"channel_secret": "n" * 32},
                                 headers=shop.auth)
    assert changed.status == 200
    again = events.webhook_body([events.follow_event(USER)])
    assert (await _post(client, shop.shop_id, again, signature_for(again, "n" * 32))).status == 200
    assert (await _post(client, shop.shop_id, again, signature_for(again, "wrong"))).status == 401
    await settle(client.app)
