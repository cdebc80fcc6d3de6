"""Webhook events parse with line-bot-sdk into the right classes, signatures
verify, redelivery keeps IDs and tokens; the SDK's async client talks to
linesim over a real socket."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from linebot.v3 import WebhookParser
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    Configuration,
    PushMessageRequest,
    ReplyMessageRequest,
    TextMessage,
)
from linebot.v3.webhooks import (
    AccountLinkEvent,
    FollowEvent,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
    UnfollowEvent,
)

from linesim import SimConfig, create_app, webhook
from linesim.client import SimClient, SimError
from linesim.validation import validate_event

from .linesim_helpers import AUTH, TOKEN, USER, png, rich_menu, start_bot

SECRET = "0123456789abcdef0123456789abcdef"


def test_factories_are_complete_per_webhook_yml() -> None:
    events = [webhook.follow_event(USER), webhook.unfollow_event(USER),
              webhook.text_message_event(USER, "こんにちは"),
              webhook.postback_event(USER, "a=1", {"datetime": "2037-01-01T10:00"}),
              webhook.account_link_event(USER, "n" * 16), webhook.account_link_event(USER, "n" * 16, "failed")]
    for event in events:
        assert validate_event(event) == [], event
        assert len(event["webhookEventId"]) == 26
    assert "replyToken" not in events[1] and "replyToken" not in events[5]
    assert "source" not in events[5]


async def test_webhook_signed_and_parses_into_sdk_models(sim: Any, aiohttp_server: Any) -> None:
    url, received = await start_bot(aiohttp_server)
    resp = await sim.post("/_sim/webhook", json={"url": url, "channel_secret": SECRET, "events": [
        {"type": "follow", "user_id": USER},
        {"type": "text", "user_id": USER, "text": "hi"},
        {"type": "postback", "user_id": USER, "data": "action=buy&id=1"},
        {"type": "accountLink", "user_id": USER, "nonce": "n" * 20},
        {"type": "unfollow", "user_id": USER}]})
    assert resp.status == 200
    answer = await resp.json()
    assert answer["status"] == 200 and answer["body"] == {"ok": True}
    [(raw, headers)] = received
    assert headers["x-line-signature"] == webhook.sign(raw, SECRET)
    parsed = WebhookParser(SECRET).parse(raw.decode("utf-8"), headers["x-line-signature"])
    assert [type(e) for e in parsed] == [FollowEvent, MessageEvent, PostbackEvent, AccountLinkEvent,
                                         UnfollowEvent]
    assert parsed[0].follow.is_unblocked is False
    assert isinstance(parsed[1].message, TextMessageContent) and parsed[1].message.text == "hi"
    assert parsed[1].message.quote_token
    assert parsed[2].postback.data == "action=buy&id=1"
    assert parsed[3].link.result == "ok"
    assert all(e.delivery_context.is_redelivery is False for e in parsed)
    assert json.loads(raw)["events"] == answer["events"]
    with pytest.raises(InvalidSignatureError):
        WebhookParser("another-secret").parse(raw.decode("utf-8"), headers["x-line-signature"])


async def test_redelivery_same_ids_and_tokens(sim: Any, aiohttp_server: Any) -> None:
    url, received = await start_bot(aiohttp_server, status=500)
    first = await (await sim.post("/_sim/webhook", json={
        "url": url, "channel_secret": SECRET, "event": {"type": "text", "user_id": USER, "text": "x"}})).json()
    assert first["status"] == 500
    event = first["events"][0]
    again = await (await sim.post("/_sim/webhook", json={
        "url": url, "channel_secret": SECRET, "redeliver": [event["webhookEventId"]]})).json()
    [redelivered] = again["events"]
    assert redelivered == {**event, "deliveryContext": {"isRedelivery": True}}
    parsed = WebhookParser(SECRET).parse(received[1][0].decode(), received[1][1]["x-line-signature"])
    assert parsed[0].delivery_context.is_redelivery is True
    assert webhook.redelivered([event])[0] == redelivered


async def test_sdk_async_client_against_linesim(aiohttp_server: Any) -> None:
    server = await aiohttp_server(create_app(SimConfig()))
    base = str(server.make_url("")).rstrip("/")
    sim = SimClient(base)
    url, _ = await start_bot(aiohttp_server)
    try:
        reply_token = (await sim.webhook(url, SECRET, event={"type": "follow", "user_id": USER}))["events"][0]["replyToken"]
        config = Configuration(host=base, access_token=TOKEN)
        async with AsyncApiClient(config) as api_client:
            api = AsyncMessagingApi(api_client)
            key = str(uuid.uuid4())
            sent = await api.push_message(PushMessageRequest(to=USER, messages=[TextMessage(text="hi")]),
                                          x_line_retry_key=key)
            assert sent.sent_messages[0].id
            with pytest.raises(ApiException) as conflict:
                await api.push_message(PushMessageRequest(to=USER, messages=[TextMessage(text="hi")]),
                                       x_line_retry_key=key)
            assert conflict.value.status == 409
            assert conflict.value.headers["x-line-accepted-request-id"]
            assert json.loads(conflict.value.body)["sentMessages"][0]["id"] == sent.sent_messages[0].id
            await api.reply_message(ReplyMessageRequest(reply_token=reply_token,
                                                        messages=[TextMessage(text="welcome")]))
            with pytest.raises(ApiException) as bad:
                await api.reply_message(ReplyMessageRequest(reply_token=reply_token,
                                                            messages=[TextMessage(text="welcome")]))
            assert bad.value.status == 400 and json.loads(bad.value.body)["message"] == "Invalid reply token"
            profile = await api.get_profile(USER)
            assert profile.user_id == USER
            menu = await api.create_rich_menu(rich_menu())
            await AsyncMessagingApiBlob(api_client).set_rich_menu_image(
                menu.rich_menu_id, png(2500, 843), _headers={"Content-Type": "image/png"})
            await api.set_default_rich_menu(menu.rich_menu_id)
            assert (await api.get_default_rich_menu_id()).rich_menu_id == menu.rich_menu_id
        msgs = await sim.messages(to=USER)
        assert [m["kind"] for m in msgs] == ["push", "reply"]
        await sim.faults("push", status=500)
        await sim.config(rate_limits={"profile": 5})
        assert (await sim.config())["rate_limits"] == {"profile": 5}
        await sim.reset()
        assert await sim.messages() == []
        with pytest.raises(SimError):
            await sim.webhook(url, SECRET, event={"type": "nope", "user_id": USER})
    finally:
        await sim.close()


async def test_missing_auth_401_through_client(sim: Any) -> None:
    resp = await sim.get(f"/v2/bot/profile/{USER}")
    assert resp.status == 401
    assert (await sim.get(f"/v2/bot/profile/{USER}", headers=AUTH)).status == 404
