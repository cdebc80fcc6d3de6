"""Shared pieces of our Flex builders: the message wrapper that enforces LINE's limits, and formatting.

LINE refuses a whole request when one message breaks a limit, and the SDK does
not check most of them (LINE_FACTS.md), so every builder goes through
`flex_message`, which fails at build time instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.line_limits import (
    MAX_ALT_TEXT,
    MAX_BUBBLE_BYTES,
    MAX_CAROUSEL_BUBBLES,
    MAX_CAROUSEL_BYTES,
    MAX_FLEX_ACTION_LABEL,
    MAX_TEXT,
    utf16_len,
)

ELLIPSIS = "…"
WEEKDAYS = "月火水木金土日"


class FlexLimitError(ValueError):
    """A message would break one of LINE's limits."""


def clip(text: str, limit: int) -> str:
    """At most `limit` UTF-16 units (LINE's count), with an ellipsis when cut."""
    if utf16_len(text) <= limit:
        return text
    out: list[str] = []
    used = 0
    for char in text:
        size = utf16_len(char)
        if used + size > limit - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + ELLIPSIS


def carousel(bubbles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A carousel container; refuses a 13th bubble or a size LINE would refuse."""
    if not bubbles:
        raise FlexLimitError("a carousel needs at least one bubble")
    if len(bubbles) > MAX_CAROUSEL_BUBBLES:
        raise FlexLimitError(f"a carousel holds at most {MAX_CAROUSEL_BUBBLES} bubbles, got {len(bubbles)}")
    return {"type": "carousel", "contents": list(bubbles)}


def flex_message(alt_text: str, contents: dict[str, Any]) -> dict[str, Any]:
    """A Flex message (plain dict the SDK's `FlexMessage` accepts), checked against LINE's limits."""
    if not alt_text or utf16_len(alt_text) > MAX_ALT_TEXT:
        raise FlexLimitError(f"altText must be 1-{MAX_ALT_TEXT} characters")
    bubbles = contents["contents"] if contents.get("type") == "carousel" else [contents]
    for index, bubble in enumerate(bubbles):
        if len(compact_json(bubble)) > MAX_BUBBLE_BYTES:
            raise FlexLimitError(f"bubble {index} is over {MAX_BUBBLE_BYTES} bytes")
    if contents.get("type") == "carousel" and len(compact_json(contents)) > MAX_CAROUSEL_BYTES:
        raise FlexLimitError(f"carousel is over {MAX_CAROUSEL_BYTES} bytes")
    return {"type": "flex", "altText": alt_text, "contents": contents}


def text_message(text: str) -> dict[str, Any]:
    if not text or utf16_len(text) > MAX_TEXT:
        raise FlexLimitError(f"a text message must be 1-{MAX_TEXT} characters")
    return {"type": "text", "text": text}


def uri_button(label: str, uri: str, *, color: str | None = None, style: str = "primary") -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "style": style,
        "height": "sm",
        "action": {"type": "uri", "label": clip(label, MAX_FLEX_ACTION_LABEL), "uri": uri},
    }
    if color:
        button["color"] = color
    return button


def yen(amount: int) -> str:
    return f"¥{amount:,}"


def points(amount: int) -> str:
    return f"{amount:,}pt"


def jp_date(at: datetime, timezone: str) -> str:
    """A date as a Japanese customer reads it, in the shop's time zone: 2026年12月1日(火)."""
    local = at.astimezone(ZoneInfo(timezone))
    return f"{local.year}年{local.month}月{local.day}日({WEEKDAYS[local.weekday()]})"


def row(label: str, value: str, *, value_color: str = "#111111", bold: bool = False) -> dict[str, Any]:
    """A label/value line, as used in receipts."""
    return {
        "type": "box",
        "layout": "horizontal",
        "contents": [
            {"type": "text", "text": label, "size": "sm", "color": "#888888", "flex": 0},
            {"type": "text", "text": value, "size": "sm", "color": value_color, "align": "end",
             "weight": "bold" if bold else "regular", "wrap": True},
        ],
    }


def compact_json(obj: Any) -> bytes:
    """JSON as LINE measures and we send it: compact, UTF-8."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')  # what JSON must escape in a string (one C-level scan, on the hot path)


def _json_safe(value: str) -> bool:
    """Whether `value` encodes in JSON as itself (no quote, backslash or control character to escape)."""
    return _JSON_ESCAPED.search(value) is None


class EncodedTemplate:
    """A JSON value encoded once with a placeholder string left open (e.g. a per-customer click URL).

    `fill` joins the encoded parts around the value: no serialisation per use, and
    the size is exact, so LINE's byte limits are checked without encoding again.
    """

    __slots__ = ("parts", "size")

    def __init__(self, obj: Any, slot: str) -> None:
        if not _json_safe(slot):
            raise ValueError("a slot must encode as itself")
        self.parts = compact_json(obj).split(slot.encode())
        self.size = sum(len(part) for part in self.parts)  # bytes without the slots

    def fill(self, value: str) -> bytes:
        if not _json_safe(value):
            raise ValueError("a filled-in value must encode as itself in JSON")
        return value.encode().join(self.parts)


def carousel_fit(bubbles: Sequence[bytes]) -> int:
    """How many of these encoded bubbles, from the first, one carousel holds (≤ 12, ≤ 50 KB in all); a bubble
    over 30 KB is refused."""
    if len(bubbles) > MAX_CAROUSEL_BUBBLES:
        raise FlexLimitError(f"a carousel holds at most {MAX_CAROUSEL_BUBBLES} bubbles, got {len(bubbles)}")
    kept = 0
    total = len(b'{"type":"carousel","contents":[]}')
    for index, bubble in enumerate(bubbles):
        if len(bubble) > MAX_BUBBLE_BYTES:
            raise FlexLimitError(f"bubble {index} is over {MAX_BUBBLE_BYTES} bytes")
        grown = total + len(bubble) + (1 if kept else 0)
        if kept and grown > MAX_CAROUSEL_BYTES:
            break
        kept += 1
        total = grown
    return kept


def encoded_carousel_message(alt_text: str, bubbles: Sequence[bytes]) -> bytes:
    """A Flex carousel message as JSON bytes from encoded bubbles, checked against LINE's limits.

    A bubble over 30 KB is refused; bubbles that would take the carousel over 50 KB
    are dropped from the end (never sent for LINE to refuse the whole request).
    """
    if not alt_text or utf16_len(alt_text) > MAX_ALT_TEXT:
        raise FlexLimitError(f"altText must be 1-{MAX_ALT_TEXT} characters")
    if not bubbles:
        raise FlexLimitError("a carousel needs at least one bubble")
    kept = bubbles[:carousel_fit(bubbles)]
    return (b'{"type":"flex","altText":' + compact_json(alt_text) + b',"contents":{"type":"carousel","contents":['
            + b",".join(kept) + b"]}}")
