"""Rich menu geometry and the LINE rich menu object, from the shop's settings. Pure.

LINE's rules (LINE_FACTS.md): width 800-2,500 px, height >= 250, width/height
>= 1.45, at most 20 areas, chatBarText <= 14, action labels <= 20, postback
data <= 300. We use LINE's usual sizes (2500x1686 large, 2500x843 compact) and
tile the buttons in rows of at most three, so the areas cover the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bot.postback import build
from core.line_limits import MAX_ACTION_LABEL, MAX_CHAT_BAR_TEXT, MAX_RICH_MENU_AREAS, utf16_len
from storage.shop_settings import RichMenuButton, RichMenuSettings

SIZES = {"large": (2500, 1686), "compact": (2500, 843)}
MAX_PER_ROW = 3
NAME_PREFIX = "linecrm"


@dataclass(frozen=True)
class Bounds:
    x: int
    y: int
    width: int
    height: int

    def as_json(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


@dataclass(frozen=True)
class Area:
    bounds: Bounds
    button: RichMenuButton


def _split(total: int, parts: int) -> list[tuple[int, int]]:
    """(offset, length) of `parts` integer slices that exactly cover `total`."""
    edges = [round(total * i / parts) for i in range(parts + 1)]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(parts)]


def layout(settings: RichMenuSettings) -> tuple[tuple[int, int], list[Area]]:
    """Image size and one area per button, row by row, left to right."""
    width, height = SIZES[settings.size]
    buttons = settings.buttons
    if not 1 <= len(buttons) <= MAX_RICH_MENU_AREAS:
        raise ValueError(f"a rich menu needs 1-{MAX_RICH_MENU_AREAS} buttons")
    rows = math.ceil(len(buttons) / MAX_PER_ROW)
    per_row = math.ceil(len(buttons) / rows)
    areas: list[Area] = []
    remaining = list(buttons)
    for y, row_height in _split(height, rows):
        row, remaining = remaining[:per_row], remaining[per_row:]
        for (x, cell_width), button in zip(_split(width, len(row)), row, strict=True):
            areas.append(Area(Bounds(x, y, cell_width, row_height), button))
    return (width, height), areas


def action(button: RichMenuButton) -> dict[str, Any]:
    if utf16_len(button.label) > MAX_ACTION_LABEL:
        raise ValueError(f"label {button.label!r} is longer than {MAX_ACTION_LABEL} characters")
    if button.action == "url":
        return {"type": "uri", "label": button.label, "uri": button.url}
    return {"type": "postback", "label": button.label, "data": build(button.action), "displayText": button.label}


def rich_menu_object(settings: RichMenuSettings, shop_id: str, version: str, name: str | None = None) -> dict[str, Any]:
    """The body of LINE's `POST /v2/bot/richmenu` (our menus are recognised by their name prefix; a segment's
    own menu passes its `name`, which the default menu's deploy does not take for one of its own)."""
    if utf16_len(settings.chat_bar_text) > MAX_CHAT_BAR_TEXT:
        raise ValueError(f"chat_bar_text is longer than {MAX_CHAT_BAR_TEXT} characters")
    (width, height), areas = layout(settings)
    return {
        "size": {"width": width, "height": height},
        "selected": True,
        "name": name or f"{NAME_PREFIX}:{shop_id}:{version}",
        "chatBarText": settings.chat_bar_text,
        "areas": [{"bounds": area.bounds.as_json(), "action": action(area.button)} for area in areas],
    }


def is_ours(name: str | None, shop_id: str) -> bool:
    return bool(name) and str(name).startswith(f"{NAME_PREFIX}:{shop_id}:")
