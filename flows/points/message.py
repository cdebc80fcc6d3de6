"""The points notices' Flex bubbles: the shop's name and colours, the figures, a button to the shop.

Looks only: what to say comes in a `Content` (`flows.points.decide`), the shop's
look in a `Style`. Built through `core.flex.flex_message`, so a bubble LINE
would refuse fails here, not at LINE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.flex import clip, flex_message, jp_date, points, row, uri_button
from flows.points.decide import Content, Earned, Monthly

WARNING = "#E53935"


@dataclass(frozen=True)
class Style:
    shop_name: str
    timezone: str
    color: str  # the accent: header background, figures, button
    text_color: str  # on the accent
    button_text: str


def jp_moment(at: datetime, timezone: str) -> str:
    """Date and time as a Japanese customer reads them, in the shop's time zone: 2038年3月31日(水) 23:59."""
    local = at.astimezone(ZoneInfo(timezone))
    return f"{jp_date(at, timezone)} {local:%H:%M}"


def _bubble(style: Style, title: str, lead: str, figure: str, figure_color: str, rows: list[dict[str, Any]],
            button_url: str | None) -> dict[str, Any]:
    bubble: dict[str, Any] = {
        "type": "bubble",
        "header": {
            "type": "box", "layout": "vertical", "backgroundColor": style.color,
            "contents": [
                {"type": "text", "text": clip(style.shop_name, 60), "size": "xs", "color": style.text_color},
                {"type": "text", "text": title, "size": "lg", "weight": "bold", "color": style.text_color},
            ],
        },
        "body": {
            "type": "box", "layout": "vertical", "spacing": "md",
            "contents": [
                {"type": "text", "text": lead, "size": "sm", "wrap": True},
                {"type": "text", "text": figure, "size": "3xl", "weight": "bold", "color": figure_color},
                {"type": "separator"},
                *rows,
            ],
        },
    }
    if button_url:
        bubble["footer"] = {"type": "box", "layout": "vertical",
                            "contents": [uri_button(style.button_text, button_url, color=style.color)]}
    return bubble


def notice_message(content: Content, style: Style, button_url: str | None) -> dict[str, Any]:
    """The LINE message of one notice (`button_url`: the click link to the shop, None when it has no URL)."""
    if isinstance(content, Earned):
        bubble = _bubble(style, "ポイント獲得のお知らせ",
                         f"ご利用ありがとうございます!{points(content.amount)}を獲得しました。",
                         f"+{points(content.amount)}", style.color,
                         [row("現在のポイント", points(content.balance), bold=True)], button_url)
        return flex_message(f"{points(content.amount)}を獲得しました(現在 {points(content.balance)})", bubble)
    if isinstance(content, Monthly):
        rows = [row("現在のポイント", points(content.balance), bold=True)]
        if content.expiring_amount and content.expiring_at is not None:
            rows += [row("期限が近いポイント", points(content.expiring_amount), value_color=WARNING, bold=True),
                     row("有効期限", jp_moment(content.expiring_at, style.timezone))]
        bubble = _bubble(style, "ポイント残高のお知らせ", "現在のポイント残高をお知らせします。",
                         points(content.balance), style.color, rows, button_url)
        return flex_message(f"現在のポイント: {points(content.balance)}", bubble)
    when = jp_moment(content.expires_at, style.timezone)
    bubble = _bubble(style, "ポイント有効期限のお知らせ",
                     f"{points(content.amount)}が{when}に失効します。お早めにご利用ください。",
                     points(content.amount), WARNING,
                     [row("有効期限", when), row("現在のポイント", points(content.balance), bold=True)], button_url)
    return flex_message(f"{points(content.amount)}が{jp_date(content.expires_at, style.timezone)}に失効します",
                        bubble)
