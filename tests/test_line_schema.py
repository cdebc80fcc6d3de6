"""LINE message validation in core (`core.line_schema`), as broadcasts (and step sequences) use it: what LINE
refuses is refused with its field, and what it accepts passes — checked against linesim's requests too."""

from __future__ import annotations

from typing import Any

import pytest

from core.line_schema import message_errors
from linesim.validation import validate_request

BUTTON = {"type": "button", "action": {"type": "uri", "label": "見る", "uri": "https://shop.example/p/1"}}
VALID: list[dict[str, Any]] = [
    {"type": "text", "text": "こんにちは {display_name} さん"},
    {"type": "sticker", "packageId": "446", "stickerId": "1988"},
    {"type": "image", "originalContentUrl": "https://a.example/a.jpg", "previewImageUrl": "https://a.example/b.jpg"},
    {"type": "flex", "altText": "セール", "contents": {"type": "carousel", "contents": [
        {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [
            {"type": "text", "text": "冬のセール", "weight": "bold"}, BUTTON]}}] * 3}},
    {"type": "template", "altText": "a", "template": {"type": "buttons", "text": "t", "actions": [
        {"type": "postback", "label": "ポイント", "data": "v1:points"}]}},
    {"type": "text", "text": "選んでください", "quickReply": {"items": [
        {"type": "action", "action": {"type": "message", "label": "はい", "text": "はい"}}]}},
]


@pytest.mark.parametrize("message", VALID, ids=lambda m: str(m["type"]))
def test_valid_messages_pass_here_and_in_linesim(message: dict[str, Any]) -> None:
    assert message_errors([message]) == []
    assert validate_request("PushMessageRequest", {"to": "U" + "0" * 32, "messages": [message]}) == []


LONG = "😀" * 2501  # 2,501 characters, 5,002 UTF-16 units


@pytest.mark.parametrize(("message", "field"), [
    ({"type": "text"}, "messages[0].text"),
    ({"type": "text", "text": 5}, "messages[0].text"),
    ({"type": "nope"}, "messages[0].type"),
    ({"text": "no type"}, "messages[0].type"),
    ({"type": "text", "text": LONG}, "messages[0].text"),
    ({"type": "flex", "altText": "x" * 1501, "contents": VALID[3]["contents"]}, "messages[0].altText"),
    ({"type": "flex", "altText": "x", "contents": {"type": "bubble", "body": {
        "type": "box", "layout": "sideways", "contents": []}}}, "messages[0].contents.body.layout"),
    ({"type": "flex", "altText": "x", "contents": {"type": "carousel", "contents": [
        {"type": "bubble"}] * 13}}, "messages[0].contents.contents"),
    ({"type": "flex", "altText": "x", "contents": {"type": "bubble", "body": {"type": "box", "layout": "vertical",
      "contents": [{"type": "button", "action": {"type": "uri", "label": "l" * 41, "uri": "https://a.example"}}]}}},
     "messages[0].contents.body.contents[0].action.label"),
    ({"type": "template", "altText": "a", "template": {"type": "buttons", "text": "t", "actions": [
        {"type": "postback", "label": "p", "data": "d" * 301}]}}, "messages[0].template.actions[0].data"),
    ({"type": "text", "text": "q", "quickReply": {"items": [
        {"type": "action", "action": {"type": "message", "label": "は", "text": "は"}}] * 14}},
     "messages[0].quickReply.items"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_what_line_refuses_is_refused_with_its_field(message: dict[str, Any], field: str) -> None:
    problems = message_errors([message])
    assert problems and problems[0][0] == field, problems
    assert validate_request("PushMessageRequest", {"to": "U" + "0" * 32, "messages": [message]}) != []


def test_the_message_list_itself() -> None:
    assert [field for field, _ in message_errors([])] == ["messages"]
    assert [field for field, _ in message_errors([VALID[0]] * 6)] == ["messages"]
    assert message_errors([VALID[0], {"type": "text"}])[0][0] == "messages[1].text"
