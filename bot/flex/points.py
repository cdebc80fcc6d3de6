"""The points lookup bubble (rich menu "ポイント確認"): balance, soonest expiry, member rank, shop button.

Looks only; what to show comes in a `PointsView`. A customer without points
gets a friendly text instead of an empty card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.flex import clip, flex_message, jp_date, points, row, text_message, uri_button

ACCENT = "#06C755"


@dataclass(frozen=True)
class PointsView:
    balance: int
    expiring_amount: int | None
    expiring_at: datetime | None
    rank: str | None
    shop_name: str
    timezone: str
    shop_url: str | None = None


def no_points_message(shop_name: str) -> dict[str, Any]:
    return text_message(
        f"{clip(shop_name, 100)}のポイントはまだありません。お買い物をするとポイントが貯まります。お楽しみに!"
    )


def points_message(view: PointsView) -> dict[str, Any]:
    """The Flex bubble, or the friendly text when there is nothing to show yet."""
    if view.balance <= 0 and not view.expiring_amount:
        return no_points_message(view.shop_name)
    details: list[dict[str, Any]] = []
    if view.expiring_amount and view.expiring_at is not None:
        details.append(row("期限が近いポイント", points(view.expiring_amount), value_color="#E53935", bold=True))
        details.append(row("有効期限", jp_date(view.expiring_at, view.timezone)))
    details.append(row("会員ランク", clip(view.rank, 40) if view.rank else "—"))
    bubble: dict[str, Any] = {
        "type": "bubble",
        "header": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {"type": "text", "text": clip(view.shop_name, 60), "size": "xs", "color": "#888888"},
                {"type": "text", "text": "ポイント確認", "size": "lg", "weight": "bold"},
            ],
        },
        "body": {
            "type": "box",
            "layout": "vertical",
            "spacing": "md",
            "contents": [
                {"type": "text", "text": "現在のポイント", "size": "sm", "color": "#888888"},
                {"type": "text", "text": points(view.balance), "size": "3xl", "weight": "bold", "color": ACCENT},
                {"type": "separator"},
                *details,
            ],
        },
    }
    if view.shop_url:
        bubble["footer"] = {
            "type": "box",
            "layout": "vertical",
            "contents": [uri_button("ショップを見る", view.shop_url, color=ACCENT)],
        }
    return flex_message(f"現在のポイント: {points(view.balance)}", bubble)
