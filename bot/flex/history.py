"""The purchase history carousel (rich menu "購入履歴"): one bubble per order, newest first.

Looks only; which orders come from the handler. At most 12 bubbles (LINE's
carousel limit); every bubble has the same size, as LINE requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.flex import carousel, clip, flex_message, jp_date, row, text_message, yen
from core.line_limits import MAX_CAROUSEL_BUBBLES

ITEMS_SHOWN = 3
STATUS_LABELS = {"paid": ("お支払い済み", "#06C755"), "cancelled": ("キャンセル", "#888888"),
                 "refunded": ("返金済み", "#E53935")}
NO_HISTORY_TEXT = "直近3か月のご購入履歴はありません。"


@dataclass(frozen=True)
class OrderLine:
    title: str
    quantity: int


@dataclass(frozen=True)
class OrderCard:
    order_id: str
    ordered_at: datetime
    lines: Sequence[OrderLine]
    total: int
    status: str


def _bubble(order: OrderCard, timezone: str) -> dict[str, Any]:
    label, colour = STATUS_LABELS.get(order.status, (order.status, "#888888"))
    item_count = sum(line.quantity for line in order.lines)
    items: list[dict[str, Any]] = [
        {"type": "text", "text": f"・{clip(line.title, 40)} ×{line.quantity}", "size": "sm", "wrap": True,
         "maxLines": 2}
        for line in order.lines[:ITEMS_SHOWN]
    ]
    if len(order.lines) > ITEMS_SHOWN:
        items.append({"type": "text", "text": f"ほか{len(order.lines) - ITEMS_SHOWN}商品", "size": "xs",
                      "color": "#888888"})
    if not items:
        items.append({"type": "text", "text": "商品情報なし", "size": "sm", "color": "#888888"})
    return {
        "type": "bubble",
        "size": "kilo",
        "header": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {"type": "text", "text": jp_date(order.ordered_at, timezone), "weight": "bold", "size": "md"},
                {"type": "text", "text": f"注文番号 {clip(order.order_id, 40)}", "size": "xxs", "color": "#888888"},
            ],
        },
        "body": {
            "type": "box",
            "layout": "vertical",
            "spacing": "sm",
            "contents": [
                {"type": "text", "text": label, "size": "xs", "weight": "bold", "color": colour},
                *items,
                {"type": "separator", "margin": "md"},
                row("点数", f"{item_count}点"),
                row("合計", yen(order.total), bold=True),
            ],
        },
    }


def history_message(orders: Sequence[OrderCard], timezone: str) -> dict[str, Any]:
    """The carousel of the given orders (the newest 12), or a short text when there are none."""
    if not orders:
        return text_message(NO_HISTORY_TEXT)
    shown = list(orders)[:MAX_CAROUSEL_BUBBLES]
    return flex_message(f"ご購入履歴({len(shown)}件)", carousel([_bubble(order, timezone) for order in shown]))
