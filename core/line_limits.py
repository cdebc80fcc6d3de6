"""LINE's documented limits (../shared/LINE_FACTS.md) and how LINE counts characters.

Pure constants and functions: used by Flex builders, settings validation and
the LINE client wrapper so a message is refused at build time, not by LINE.
"""

from __future__ import annotations

MAX_MESSAGES_PER_REQUEST = 5
MAX_MULTICAST_RECIPIENTS = 500
MAX_CAROUSEL_BUBBLES = 12
MAX_CAROUSEL_BYTES = 50_000
MAX_BUBBLE_BYTES = 30_000
MAX_ALT_TEXT = 1_500
MAX_TEXT = 5_000
MAX_QUICK_REPLY_ITEMS = 13
MAX_POSTBACK_DATA = 300
MAX_ACTION_LABEL = 20
MAX_FLEX_ACTION_LABEL = 40
MAX_CHAT_BAR_TEXT = 14
MAX_RICH_MENU_AREAS = 20


def utf16_len(text: str) -> int:
    """Length as LINE counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2
