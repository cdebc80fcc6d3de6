"""Requests drawn from LINE's OpenAPI document: valid ones pass, invalid ones
get LINE's 400/401/413 shapes."""

from __future__ import annotations

import io
from typing import Any

import pytest

from .linesim_helpers import AUTH, USER, bubble, carousel, flex, text

PUSH = "/v2/bot/message/push"


async def push(sim: Any, messages: list[dict[str, Any]], to: str = USER, **kw: Any) -> Any:
    return await sim.post(PUSH, json={"to": to, "messages": messages}, headers=AUTH, **kw)


async def errors_of(resp: Any) -> dict[str, str]:
    body = await resp.json()
    assert body["message"] == f"The request body has {len(body['details'])} error(s)"
    return {d["property"]: d["message"] for d in body["details"]}


@pytest.mark.parametrize("messages", [
    [text()],
    [flex(bubble())],
    [flex(carousel(12))],
    [text("a"), {"type": "sticker", "packageId": "446", "stickerId": "1988"},
     {"type": "image", "originalContentUrl": "https://e.com/a.jpg", "previewImageUrl": "https://e.com/b.jpg"},
     {"type": "template", "altText": "t", "template": {"type": "buttons", "text": "Pick",
      "actions": [{"type": "message", "label": "Yes", "text": "yes"}]}},
     {"type": "text", "text": "q", "quickReply": {"items": [
         {"type": "action", "action": {"type": "postback", "label": "A", "data": "a=1"}}]}}],
], ids=["text", "bubble", "carousel12", "five-mixed"])
async def test_valid_push_accepted(sim: Any, messages: list[dict[str, Any]]) -> None:
    resp = await push(sim, messages)
    assert resp.status == 200, await resp.text()
    assert len(resp.headers["X-Line-Request-Id"]) == 32
    sent = (await resp.json())["sentMessages"]
    assert len(sent) == len(messages) and all(s["id"].isdigit() for s in sent)
    assert ("quoteToken" in sent[0]) == (messages[0]["type"] == "text")  # flex is not quotable


async def test_six_messages_rejected(sim: Any) -> None:
    resp = await push(sim, [text()] * 6)
    assert resp.status == 400
    assert (await errors_of(resp)) == {"messages": "Size must be between 1 and 5"}
    assert resp.headers["X-Line-Request-Id"]


async def test_thirteen_bubbles_rejected(sim: Any) -> None:
    resp = await push(sim, [flex(carousel(13))])
    assert resp.status == 400
    assert "messages[0].contents.contents" in await errors_of(resp)


async def test_alt_text_counts_utf16_units(sim: Any) -> None:
    ok = await push(sim, [flex(bubble(), alt="😀" * 750)])  # 750 chars = 1500 units
    assert ok.status == 200
    resp = await push(sim, [flex(bubble(), alt="😀" * 751)])  # 751 chars, 1502 units
    assert resp.status == 400
    assert "messages[0].altText" in await errors_of(resp)


async def test_text_over_5000_units_rejected(sim: Any) -> None:
    resp = await push(sim, [text("あ" * 4999 + "😀")])
    assert resp.status == 400
    assert "messages[0].text" in await errors_of(resp)


async def test_bad_user_id_rejected(sim: Any) -> None:
    resp = await push(sim, [text()], to="U123")
    assert resp.status == 400
    assert "to" in await errors_of(resp)
    resp = await sim.post("/v2/bot/message/multicast", headers=AUTH,
                          json={"to": [USER, "u" + "1" * 32], "messages": [text()]})
    assert resp.status == 400 and "to[1]" in await errors_of(resp)


async def test_unknown_types_and_missing_fields_rejected(sim: Any) -> None:
    bad_bubble = bubble()
    bad_bubble["body"]["contents"].append({"type": "marquee", "text": "x"})
    bad_bubble["footer"]["contents"][0]["action"] = {"type": "teleport", "label": "x"}
    resp = await push(sim, [{"type": "hologram", "text": "x"}, {"type": "text"}, flex(bad_bubble)])
    assert resp.status == 400
    errs = await errors_of(resp)
    assert errs["messages[0].type"].startswith("must be one of the following values")
    assert errs["messages[1].text"] == "must be specified"
    assert "messages[2].contents.body.contents[3].type" in errs
    assert "messages[2].contents.footer.contents[0].action.type" in errs


async def test_quick_reply_and_postback_limits(sim: Any) -> None:
    item = {"type": "action", "action": {"type": "message", "label": "x", "text": "x"}}
    resp = await push(sim, [{"type": "text", "text": "q", "quickReply": {"items": [item] * 14}}])
    assert resp.status == 400 and "messages[0].quickReply.items" in await errors_of(resp)
    b = bubble()
    b["footer"]["contents"][1]["action"]["data"] = "x" * 301
    resp = await push(sim, [flex(b)])
    assert resp.status == 400
    assert "messages[0].contents.footer.contents[1].action.data" in await errors_of(resp)


async def test_auth_required(sim: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
        resp = await sim.post(PUSH, json={"to": USER, "messages": [text()]}, headers=headers)
        assert resp.status == 401
        assert (await resp.json())["message"].startswith("Authentication failed.")
        assert resp.headers["X-Line-Request-Id"]
    assert await (await sim.get("/_sim/messages")).json() == []


async def test_body_over_2mb_is_413(sim: Any) -> None:
    resp = await sim.post(PUSH, data=io.BytesIO(b'{"to": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
                          headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 413


async def test_loading_animation_and_link_token(sim: Any) -> None:
    resp = await sim.post("/v2/bot/chat/loading/start", json={"chatId": USER, "loadingSeconds": 20},
                          headers=AUTH)
    assert resp.status == 202
    resp = await sim.post("/v2/bot/chat/loading/start", json={"chatId": USER, "loadingSeconds": 7},
                          headers=AUTH)
    assert resp.status == 400
    resp = await sim.post(f"/v2/bot/user/{USER}/linkToken", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["linkToken"]
