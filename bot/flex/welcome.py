"""The welcome message sent on follow: the shop's text and a button that starts browser linking."""

from __future__ import annotations

from typing import Any

from core.flex import clip, flex_message, uri_button
from core.line_limits import MAX_ALT_TEXT


def welcome_message(text: str, button_text: str, link_url: str, *, button_color: str = "#06C755") -> dict[str, Any]:
    bubble = {
        "type": "bubble",
        "body": {
            "type": "box",
            "layout": "vertical",
            "contents": [{"type": "text", "text": text, "wrap": True, "size": "md"}],
        },
        "footer": {
            "type": "box",
            "layout": "vertical",
            "contents": [uri_button(button_text, link_url, color=button_color)],
        },
    }
    return flex_message(clip(text, MAX_ALT_TEXT), bubble)
