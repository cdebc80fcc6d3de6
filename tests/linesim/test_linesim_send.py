"""Retry keys, reply tokens, rate limits, quota, faults, profiles and the
`/_sim/messages` record."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from linesim import SimConfig
from linesim.state import channel_id

from .linesim_helpers import AUTH, TOKEN, USER, USER2, FakeClock, start_bot, text

PUSH = "/v2/bot/message/push"
REPLY = "/v2/bot/message/reply"


async def records(sim: Any, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await (await sim.get("/_sim/messages", params=params)).json()
    return found


async def issue_token(sim: Any, user: str = USER) -> str:
    """A reply token issued the way the bot would get one: in a sent webhook."""
    resp = await sim.post("/_sim/reply_tokens", json={"user_id": user})
    token: str = (await resp.json())["replyToken"]
    return token


async def test_push_is_recorded(sim: Any, clock: FakeClock) -> None:
    resp = await sim.post(PUSH, json={"to": USER, "messages": [text("hi")]}, headers=AUTH)
    rid = resp.headers["X-Line-Request-Id"]
    [rec] = await records(sim)
    assert rec == {"kind": "push", "to": USER, "messages": [text("hi")], "retry_key": None,
                   "request_id": rid, "at": "2025-06-15T15:06:40Z",
                   "channel": channel_id(TOKEN), "delivered": True}
    assert TOKEN not in str(rec)
    await sim.post("/v2/bot/message/multicast", json={"to": [USER, USER2], "messages": [text()]},
                   headers=AUTH)
    assert [r["kind"] for r in await records(sim, to=USER2)] == ["multicast"]
    assert [r["kind"] for r in await records(sim, kind="push")] == ["push"]


async def test_retry_key_repeat_is_409_and_not_recorded(sim: Any, clock: FakeClock) -> None:
    key = str(uuid.uuid4())
    body = {"to": USER, "messages": [text()]}
    first = await sim.post(PUSH, json=body, headers={**AUTH, "X-Line-Retry-Key": key})
    assert first.status == 200
    sent = (await first.json())["sentMessages"]
    clock.advance(3600)
    again = await sim.post(PUSH, json=body, headers={**AUTH, "X-Line-Retry-Key": key})
    assert again.status == 409
    assert again.headers["x-line-accepted-request-id"] == first.headers["X-Line-Request-Id"]
    assert again.headers["X-Line-Request-Id"] != first.headers["X-Line-Request-Id"]
    assert await again.json() == {"message": "The retry key is already accepted", "sentMessages": sent}
    # another channel may use the same key
    other = await sim.post(PUSH, json=body, headers={"Authorization": "Bearer other", "X-Line-Retry-Key": key})
    assert other.status == 200
    # multicast conflict has no sentMessages
    mkey = str(uuid.uuid4())
    mbody = {"to": [USER], "messages": [text()]}
    assert (await sim.post("/v2/bot/message/multicast", json=mbody,
                           headers={**AUTH, "X-Line-Retry-Key": mkey})).status == 200
    m2 = await sim.post("/v2/bot/message/multicast", json=mbody, headers={**AUTH, "X-Line-Retry-Key": mkey})
    assert m2.status == 409 and "sentMessages" not in await m2.json()
    assert len(await records(sim)) == 3
    # after the 24 h retention the key is new again
    clock.advance(24 * 3600)
    assert (await sim.post(PUSH, json=body, headers={**AUTH, "X-Line-Retry-Key": key})).status == 200


async def test_retry_key_rules(sim: Any) -> None:
    token = await issue_token(sim)
    resp = await sim.post(REPLY, json={"replyToken": token, "messages": [text()]},
                          headers={**AUTH, "X-Line-Retry-Key": str(uuid.uuid4())})
    assert resp.status == 400
    # the rejected reply did not use the token
    assert (await sim.post(REPLY, json={"replyToken": token, "messages": [text()]}, headers=AUTH)).status == 200
    resp = await sim.post(PUSH, json={"to": USER, "messages": [text()]},
                          headers={**AUTH, "X-Line-Retry-Key": "not-a-uuid"})
    assert resp.status == 400


async def test_reply_token_from_webhook_works_once(sim: Any, aiohttp_server: Any) -> None:
    url, _ = await start_bot(aiohttp_server)
    resp = await sim.post("/_sim/webhook", json={
        "url": url, "channel_secret": "s",
        "event": {"type": "text", "user_id": USER2, "text": "hi"}})
    assert resp.status == 200
    token = (await resp.json())["events"][0]["replyToken"]
    body = {"replyToken": token, "messages": [text("welcome")]}
    first = await sim.post(REPLY, json=body, headers=AUTH)
    assert first.status == 200 and "sentMessages" in await first.json()
    again = await sim.post(REPLY, json=body, headers=AUTH)
    assert again.status == 400 and await again.json() == {"message": "Invalid reply token"}
    unknown = await sim.post(REPLY, json={"replyToken": "0" * 32, "messages": [text()]}, headers=AUTH)
    assert unknown.status == 400 and (await unknown.json())["message"] == "Invalid reply token"
    [rec] = await records(sim)
    assert rec["kind"] == "reply" and rec["to"] == USER2 and rec["retry_key"] is None


async def test_reply_token_expires_after_a_minute(sim: Any, clock: FakeClock) -> None:
    fresh, stale = await issue_token(sim), await issue_token(sim)
    clock.advance(59)
    assert (await sim.post(REPLY, json={"replyToken": fresh, "messages": [text()]}, headers=AUTH)).status == 200
    clock.advance(2)
    resp = await sim.post(REPLY, json={"replyToken": stale, "messages": [text()]}, headers=AUTH)
    assert resp.status == 400 and (await resp.json())["message"] == "Invalid reply token"


@pytest.fixture
def sim_config(clock: FakeClock) -> SimConfig:
    return SimConfig(clock=clock, rate_limits={"push": 2})


async def test_rate_limit_sliding_window(sim: Any, clock: FakeClock) -> None:
    body = {"to": USER, "messages": [text()]}
    assert [(await sim.post(PUSH, json=body, headers=AUTH)).status for _ in range(3)] == [200, 200, 429]
    resp = await sim.post(PUSH, json=body, headers=AUTH)
    assert await resp.json() == {"message": "The API rate limit has been exceeded. Try again later."}
    # other channels and other endpoints are not affected
    assert (await sim.post(PUSH, json=body, headers={"Authorization": "Bearer b"})).status == 200
    assert (await sim.post("/v2/bot/message/multicast", json={"to": [USER], "messages": [text()]},
                           headers=AUTH)).status == 200
    clock.advance(1.01)
    assert (await sim.post(PUSH, json=body, headers=AUTH)).status == 200
    assert len(await records(sim)) == 5
    await sim.put("/_sim/config", json={"rate_limits": {}})
    assert [(await sim.post(PUSH, json=body, headers=AUTH)).status for _ in range(3)] == [200] * 3


async def test_monthly_quota(sim: Any) -> None:
    await sim.put("/_sim/config", json={"monthly_quota": 3})
    resp = await sim.post("/v2/bot/message/multicast", json={"to": [USER, USER2], "messages": [text()]},
                          headers=AUTH)
    assert resp.status == 200
    resp = await sim.post("/v2/bot/message/multicast", json={"to": [USER, USER2], "messages": [text()]},
                          headers=AUTH)
    assert resp.status == 429
    assert await resp.json() == {"message": "You have reached your monthly limit."}
    assert (await sim.post(PUSH, json={"to": USER, "messages": [text()]}, headers=AUTH)).status == 200
    assert (await sim.post(PUSH, json={"to": USER, "messages": [text()]}, headers=AUTH)).status == 429
    # replies do not count
    token = await issue_token(sim)
    assert (await sim.post(REPLY, json={"replyToken": token, "messages": [text()]}, headers=AUTH)).status == 200
    usage = await (await sim.get("/v2/bot/message/quota/consumption", headers=AUTH)).json()
    assert usage == {"totalUsage": 3}
    assert await (await sim.get("/v2/bot/message/quota", headers=AUTH)).json() == {"type": "limited", "value": 3}


async def test_fault_status_for_n_calls_not_recorded(sim: Any) -> None:
    await sim.post("/_sim/faults", json={"endpoint": "push", "status": 500, "count": 2})
    key = {"X-Line-Retry-Key": str(uuid.uuid4())}
    body = {"to": USER, "messages": [text()]}
    statuses = [(await sim.post(PUSH, json=body, headers={**AUTH, **key})).status for _ in range(3)]
    assert statuses == [500, 500, 200]  # the retry with the same key is accepted once the fault is over
    [rec] = await records(sim)
    assert rec["retry_key"] == key["X-Line-Retry-Key"]
    await sim.post("/_sim/faults", json={"endpoint": "push", "status": 503, "count": 5})
    await sim.delete("/_sim/faults")
    assert (await sim.post(PUSH, json=body, headers=AUTH)).status == 200


async def test_fault_drop_and_latency(sim: Any) -> None:
    body = {"to": USER, "messages": [text()]}
    await sim.post("/_sim/faults", json={"endpoint": "push", "drop": True, "count": 1})
    with pytest.raises(aiohttp.ClientConnectionError):
        await sim.post(PUSH, json=body, headers=AUTH)
    assert await records(sim) == []
    await sim.post("/_sim/faults", json={"endpoint": "push", "latency_ms": 300, "count": 1})
    with pytest.raises(TimeoutError):
        await sim.post(PUSH, json=body, headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.1))
    resp = await sim.post(PUSH, json=body, headers=AUTH)
    assert resp.status == 200


async def test_profiles_and_blocked_users(sim: Any, aiohttp_server: Any) -> None:
    resp = await sim.post("/_sim/users", json={"user_id": USER, "display_name": "Hanako",
                                               "picture_url": "https://e.com/h.png", "language": "ja"})
    assert resp.status == 201
    prof = await (await sim.get(f"/v2/bot/profile/{USER}", headers=AUTH)).json()
    assert prof == {"userId": USER, "displayName": "Hanako", "pictureUrl": "https://e.com/h.png",
                    "language": "ja"}
    unknown = await sim.get(f"/v2/bot/profile/{USER2}", headers=AUTH)
    assert unknown.status == 404 and await unknown.json() == {"message": "Not found"}

    url, _ = await start_bot(aiohttp_server)
    await sim.post("/_sim/webhook", json={"url": url, "channel_secret": "s",
                                          "event": {"type": "unfollow", "user_id": USER}})
    assert (await sim.get(f"/v2/bot/profile/{USER}", headers=AUTH)).status == 404
    resp = await sim.post(PUSH, json={"to": USER, "messages": [text()]}, headers=AUTH)
    assert resp.status == 200
    assert (await records(sim))[-1]["delivered"] is False
    await sim.post("/_sim/webhook", json={"url": url, "channel_secret": "s",
                                          "event": {"type": "follow", "user_id": USER, "is_unblocked": True}})
    assert (await sim.get(f"/v2/bot/profile/{USER}", headers=AUTH)).status == 200


async def test_broadcast_goes_to_known_friends_and_reset(sim: Any) -> None:
    for uid in (USER, USER2):
        await sim.post("/_sim/users", json={"user_id": uid})
    await sim.post("/_sim/users", json={"user_id": "U" + "3" * 32, "blocked": True})
    resp = await sim.post("/v2/bot/message/broadcast", json={"messages": [text()]}, headers=AUTH)
    assert resp.status == 200 and await resp.json() == {}
    resp = await sim.post("/v2/bot/message/narrowcast", json={"messages": [text()]}, headers=AUTH)
    assert resp.status == 202
    assert [r["to"] for r in await records(sim)] == [[USER, USER2]] * 2
    await sim.post("/_sim/reset")
    assert await records(sim) == []
    assert (await sim.get(f"/v2/bot/profile/{USER}", headers=AUTH)).status == 404
