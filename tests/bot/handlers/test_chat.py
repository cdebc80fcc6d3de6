"""Follow/unfollow, keywords, postbacks and the event types we ignore, as a LINE user plays them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.postback import build
from bot.replies import push_to_customer
from bot.typedefs import LINE
from core.line_client import retry_key_for
from linesim import webhook as events
from linesim.client import SimClient
from linesim.validation import load_doc, validate_event
from storage.database import Database
from storage.webhook_events import WebhookEventRepository
from tests.bot.conftest import USER
from tests.conftest import ShopHandle

Play = Callable[..., Awaitable[dict[str, Any]]]


async def _customer(db: Database, shop: ShopHandle) -> dict[str, Any]:
    doc = await db["customers"].find_one({"_id": f"{shop.shop_id}:{USER}"})
    assert doc is not None
    return doc


async def test_unfollow_marks_blocked_and_later_pushes_are_refused(
    client: TestClient[Any, Any], play: Play, sim: SimClient, db: Database, shop: ShopHandle
) -> None:
    await play({"type": "follow", "user_id": USER})
    await play({"type": "unfollow", "user_id": USER})
    customer = await _customer(db, shop)
    assert customer["blocked"] is True and customer["friend"] is False
    line = client.app[LINE].for_token(shop.channel_access_token)
    refused = await push_to_customer(db, line, shop.shop_id, USER, [{"type": "text", "text": "セール"}],
                                     retry_key=retry_key_for("test", "after-unfollow"))
    assert refused is None
    assert [m["kind"] for m in await sim.messages(to=USER)] == ["reply"]  # only the welcome
    await play({"type": "follow", "user_id": USER, "is_unblocked": True})
    customer = await _customer(db, shop)
    assert customer["blocked"] is False and customer["friend"] is True and customer["is_unblocked"] is True


@pytest.mark.parametrize(("text", "opted_out", "answer"), [
    ("配信停止", True, "配信を停止しました"),
    ("  配信停止 ", True, "配信を停止しました"),
    ("配信再開", False, "配信を再開しました"),
])
async def test_opt_keywords_change_the_flag_and_confirm(
    play: Play, sim: SimClient, db: Database, shop: ShopHandle, text: str, opted_out: bool, answer: str
) -> None:
    if not opted_out:
        await play({"type": "text", "user_id": USER, "text": "配信停止"})
    await play({"type": "text", "user_id": USER, "text": text})
    assert (await _customer(db, shop))["opted_out"] is opted_out
    assert answer in (await sim.messages(to=USER))[-1]["messages"][0]["text"]


async def test_opt_out_postback(play: Play, db: Database, shop: ShopHandle) -> None:
    await play({"type": "postback", "user_id": USER, "data": build("opt_out")})
    assert (await _customer(db, shop))["opted_out"] is True


async def test_configured_keywords_and_default_reply(
    client: TestClient[Any, Any], play: Play, sim: SimClient, shop: ShopHandle
) -> None:
    await play({"type": "text", "user_id": USER, "text": "こんにちは"})
    assert await sim.messages(to=USER) == []  # no default reply configured: silence
    response = await client.put(
        f"/admin/api/v1/shops/{shop.shop_id}/settings/messaging", headers=shop.auth,
        json={"default_reply": "お問い合わせありがとうございます。", "keywords": {"points": ["ぽいんと"]}})
    assert response.status == 200, await response.text()
    await play({"type": "text", "user_id": USER, "text": "こんにちは"})
    await play({"type": "text", "user_id": USER, "text": "ぽいんと"})
    sent = [m["messages"][0] for m in await sim.messages(to=USER)]
    assert sent[0] == {"type": "text", "text": "お問い合わせありがとうございます。"}
    assert "ポイントはまだありません" in sent[1]["text"]


async def test_link_keyword_offers_the_link_page(play: Play, sim: SimClient, shop: ShopHandle) -> None:
    await play({"type": "text", "user_id": USER, "text": "連携"})
    message = (await sim.messages(to=USER))[0]["messages"][0]
    assert message["contents"]["footer"]["contents"][0]["action"]["uri"] == f"http://shop-bot.test/l/{shop.shop_id}"


@pytest.mark.parametrize("data", ["v=1&a=steal", "v=2&a=points", "a=points&v=1", "garbage", "v=1&a=points&x=1"])
async def test_unknown_or_tampered_postbacks_are_ignored(
    play: Play, sim: SimClient, db: Database, shop: ShopHandle, data: str, caplog: pytest.LogCaptureFixture
) -> None:
    answer = await play({"type": "postback", "user_id": USER, "data": data})
    assert answer["status"] == 200
    assert await sim.messages(to=USER) == []
    stored = await WebhookEventRepository(db).get(shop.shop_id, answer["events"][0]["webhookEventId"])
    assert stored is not None and stored["state"] == "done" and stored["outcome"] == "postback.on_invalid"
    assert "ignored postback" in caplog.text


def _event_types() -> list[str]:
    mapping = load_doc("webhook")["components"]["schemas"]["Event"]["discriminator"]["mapping"]
    return sorted(mapping)


def _sample(event_type: str) -> dict[str, Any]:
    """A minimal, spec-valid event of each type (type-specific bodies where webhook.yml requires them)."""
    base = events._base(event_type, USER, None, reply=event_type not in ("unfollow", "leave", "memberLeft"))
    bodies: dict[str, dict[str, Any]] = {
        "message": events.text_message_event(USER, "hi"),
        "follow": events.follow_event(USER),
        "postback": events.postback_event(USER, build("points")),
        "accountLink": events.account_link_event(USER, "n" * 20, result="failed"),
        "unsend": {"unsend": {"messageId": "1"}},
        "videoPlayComplete": {"videoPlayComplete": {"trackingId": "t"}},
        "beacon": {"beacon": {"hwid": "d41d8cd98f", "type": "enter"}},
        "memberJoined": {"joined": {"members": [{"type": "user", "userId": USER}]},
                         "source": {"type": "group", "groupId": "C" + "1" * 32}},
        "memberLeft": {"left": {"members": [{"type": "user", "userId": USER}]},
                       "source": {"type": "group", "groupId": "C" + "1" * 32}},
        "join": {"source": {"type": "group", "groupId": "C" + "1" * 32}},
        "leave": {"source": {"type": "group", "groupId": "C" + "1" * 32}},
        "membership": {"membership": {"type": "joined", "membershipId": 1}},
        "module": {"module": {"type": "attached", "botId": "U" + "2" * 32, "scopes": ["message.write"]}},
        "activated": {"chatControl": {"expireAt": 1}},
        "delivery": {"delivery": {"data": "d"}},
    }
    body = bodies.get(event_type, {})
    return body if "webhookEventId" in body else {**base, **body}


async def test_every_webhook_event_type_is_accepted_and_stored(
    play: Play, db: Database, shop: ShopHandle
) -> None:
    samples = [_sample(kind) for kind in _event_types()]
    assert len(samples) >= 19
    for sample in samples:
        assert validate_event(sample) == [], sample["type"]
    answer = await play(*samples)
    assert answer["status"] == 200
    stored = {doc["type"]: doc for doc in await WebhookEventRepository(db).events(shop.shop_id)}
    assert set(stored) == set(_event_types())
    assert all(doc["state"] == "done" for doc in stored.values())
    assert stored["beacon"]["outcome"] == "unhandled" and stored["join"]["outcome"] == "unhandled"
