"""The LINE client wrapper against linesim: retry keys, 409, 429, 5xx, 4xx, quota, reply tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.line_client import (
    InvalidReplyToken,
    LineApiError,
    LineClients,
    QuotaExhausted,
    RetryPolicy,
    retry_key_for,
)
from linesim.client import SimClient

USER = "U" + "a" * 32
TEXT = [{"type": "text", "text": "こんにちは"}]


@pytest.fixture
async def sim(linesim_url: str) -> AsyncIterator[SimClient]:
    async with SimClient(linesim_url) as client:
        yield client


@pytest.fixture
async def line(linesim_url: str) -> AsyncIterator[LineClients]:
    clients = LineClients(linesim_url, timeout=2, retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05))
    yield clients
    await clients.close()


def test_retry_key_is_deterministic_uuid() -> None:
    first = retry_key_for("shop", "U1", "reminders", 1, 2)
    assert first == retry_key_for("shop", "U1", "reminders", 1, 2)
    assert first != retry_key_for("shop", "U1", "reminders", 1, 3)
    assert len(first) == 36 and first.count("-") == 4


async def test_push_carries_retry_key_and_repeat_counts_as_sent(line: LineClients, sim: SimClient) -> None:
    client = line.for_token("token-1")
    key = retry_key_for("s", USER, "test")
    first = await client.push(USER, TEXT, retry_key=key)
    assert not first.already_accepted and first.request_id
    second = await client.push(USER, TEXT, retry_key=key)
    assert second.already_accepted and second.request_id == first.request_id
    messages = await sim.messages()
    assert len(messages) == 1 and messages[0]["retry_key"] == key and messages[0]["to"] == USER


async def test_5xx_is_retried_with_the_same_key(line: LineClients, sim: SimClient) -> None:
    await sim.faults("push", status=500, count=2)
    result = await line.for_token("token-1").push(USER, TEXT, retry_key=retry_key_for("5xx"))
    assert not result.already_accepted
    messages = await sim.messages()
    assert len(messages) == 1 and messages[0]["retry_key"] == retry_key_for("5xx")


async def test_dropped_connection_is_retried(line: LineClients, sim: SimClient) -> None:
    await sim.faults("push", drop=True, count=1)
    await line.for_token("token-1").push(USER, TEXT, retry_key=retry_key_for("drop"))
    assert len(await sim.messages()) == 1


async def test_429_rate_limit_is_retried(line: LineClients, sim: SimClient) -> None:
    await sim.faults("push", status=429, count=2)
    await line.for_token("token-1").push(USER, TEXT, retry_key=retry_key_for("429"))
    assert len(await sim.messages()) == 1


async def test_retries_give_up_after_the_policy(line: LineClients, sim: SimClient) -> None:
    await sim.faults("push", status=503, count=10)
    with pytest.raises(LineApiError) as raised:
        await line.for_token("token-1").push(USER, TEXT, retry_key=retry_key_for("give-up"))
    assert raised.value.status == 503
    await sim.clear_faults()
    assert await sim.messages() == []


async def test_4xx_is_not_retried_and_keeps_the_body(line: LineClients, sim: SimClient, caplog: Any) -> None:
    with pytest.raises(LineApiError) as raised:
        await line.for_token("token-1").push("not-a-user-id", TEXT, retry_key=retry_key_for("bad"))
    assert raised.value.status == 400 and "message" in raised.value.body
    assert "token-1" not in caplog.text
    assert await sim.messages() == []


async def test_monthly_quota_raises_quota_exhausted_without_looping(line: LineClients, sim: SimClient) -> None:
    await sim.config(monthly_quota=1)
    client = line.for_token("token-q")
    await client.push(USER, TEXT, retry_key=retry_key_for("q1"))
    with pytest.raises(QuotaExhausted):
        await client.push(USER, TEXT, retry_key=retry_key_for("q2"))
    assert len(await sim.messages()) == 1


async def test_reply_with_unknown_token_is_invalid_reply_token(line: LineClients) -> None:
    with pytest.raises(InvalidReplyToken):
        await line.for_token("token-1").reply("not-a-token", TEXT)


async def test_reply_with_issued_token_once(line: LineClients, sim: SimClient) -> None:
    token = await sim.reply_token(USER)
    client = line.for_token("token-1")
    await client.reply(token, TEXT)
    with pytest.raises(InvalidReplyToken):
        await client.reply(token, TEXT)
    replies = await sim.messages(kind="reply")
    assert len(replies) == 1 and replies[0]["to"] == USER


async def test_profile_known_unknown_and_blocked(line: LineClients, sim: SimClient) -> None:
    await sim.add_user(USER, display_name="山田 花子", language="ja")
    client = line.for_token("token-1")
    profile = await client.get_profile(USER)
    assert profile is not None and profile["displayName"] == "山田 花子"
    assert await client.get_profile("U" + "b" * 32) is None


async def test_multicast_and_one_client_per_token(line: LineClients, sim: SimClient) -> None:
    assert line.for_token("token-1") is line.for_token("token-1")
    assert line.for_token("token-1") is not line.for_token("token-2")
    users = ["U" + f"{i:032x}" for i in range(3)]
    result = await line.for_token("token-1").multicast(users, TEXT, retry_key=retry_key_for("mc"))
    assert not result.already_accepted
    again = await line.for_token("token-1").multicast(users, TEXT, retry_key=retry_key_for("mc"))
    assert again.already_accepted
    sent = await sim.messages(kind="multicast")
    assert len(sent) == 1 and sent[0]["to"] == users


FLEX = {"type": "flex", "altText": "おすすめ", "contents": {"type": "bubble", "body": {
    "type": "box", "layout": "vertical", "contents": [{"type": "text", "text": "¥12,800"}]}}}


async def test_push_json_sends_the_dict_as_is_with_retry_key_and_409(line: LineClients, sim: SimClient) -> None:
    client = line.for_token("token-1")
    key = retry_key_for("json", USER)
    first = await client.push_json(USER, [FLEX], retry_key=key)
    assert not first.already_accepted and first.request_id and first.sent_message_ids
    again = await client.push_json(USER, [FLEX], retry_key=key)
    assert again.already_accepted and again.request_id == first.request_id
    (sent,) = await sim.messages()
    assert sent["messages"] == [FLEX] and sent["retry_key"] == key and sent["to"] == USER


async def test_push_json_shares_the_retry_and_quota_handling(line: LineClients, sim: SimClient) -> None:
    client = line.for_token("token-j")
    await sim.faults("push", status=429, count=1)
    await sim.faults("push", status=500, count=1)
    await client.push_json(USER, [FLEX], retry_key=retry_key_for("j1"))
    assert len(await sim.messages()) == 1
    with pytest.raises(LineApiError) as refused:  # LINE's validation refuses it: a 4xx is not retried
        await client.push_json(USER, [{"type": "flex", "altText": "", "contents": {}}], retry_key=retry_key_for("j2"))
    assert refused.value.status == 400
    await sim.config(monthly_quota=1)
    with pytest.raises(QuotaExhausted):
        await client.push_json(USER, [FLEX], retry_key=retry_key_for("j3"))
    assert len(await sim.messages()) == 1


async def test_idle_clients_are_closed_so_rotated_tokens_do_not_pile_up(linesim_url: str) -> None:
    clients = LineClients(linesim_url, timeout=5)
    try:
        old = clients.for_token("old-token")
        current = clients.for_token("new-token")
        assert clients.open_clients == 2 and old.last_used <= current.last_used
        session = clients.http_session()
        assert clients.http_session() is session  # one pooled session: pushes and LINE Login share it
        current.last_used = old.last_used + LineClients.IDLE  # the new token is in use, the old one is not
        clients._prune(old.last_used + LineClients.IDLE + 1)
        assert clients.open_clients == 1 and clients.for_token("new-token") is current
        assert clients.for_token("old-token") is not old  # a later use makes a fresh one
    finally:
        await clients.close()
