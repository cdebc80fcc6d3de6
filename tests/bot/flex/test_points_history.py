"""Points and history builders: LINE's limits at build time, and messages linesim's validation accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from linebot.v3.messaging import FlexMessage, TextMessage

from bot.flex.history import OrderCard, OrderLine, history_message
from bot.flex.points import PointsView, points_message
from core.flex import FlexLimitError, carousel, clip, flex_message, jp_date, text_message
from core.line_limits import utf16_len
from linesim.validation import validate_request

AT = datetime(2037, 12, 1, 1, 0, tzinfo=UTC)


def _valid(message: dict[str, object]) -> None:
    assert validate_request("PushMessageRequest", {"to": "U" + "1" * 32, "messages": [message]}) == []
    model = FlexMessage.from_dict(message) if message["type"] == "flex" else TextMessage.from_dict(message)
    assert model is not None


def test_twelve_long_orders_make_a_valid_carousel_and_more_are_cut() -> None:
    long_title = "とても長い商品名" * 30 + "😀"
    orders = [
        OrderCard(f"order-{i}", AT - timedelta(days=i), [OrderLine(long_title, 2)] * 20, 1_234_567, "paid")
        for i in range(15)
    ]
    message = history_message(orders, "Asia/Tokyo")
    _valid(message)
    assert len(message["contents"]["contents"]) == 12


def test_points_bubble_is_valid_and_no_points_is_text() -> None:
    view = PointsView(12345, 300, AT, "ゴールド" * 30, "店" * 300, "Asia/Tokyo", "https://shop.example.jp/")
    message = points_message(view)
    _valid(message)
    assert message["altText"] == "現在のポイント: 12,345pt"
    none = points_message(PointsView(0, None, None, None, "ショップ", "Asia/Tokyo"))
    _valid(none)
    assert none["type"] == "text"


def test_limits_are_enforced_at_build_time() -> None:
    bubble = {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": []}}
    with pytest.raises(FlexLimitError):
        carousel([bubble] * 13)
    with pytest.raises(FlexLimitError):
        flex_message("a" * 1501, bubble)
    with pytest.raises(FlexLimitError):
        flex_message("😀" * 751, bubble)  # 1,502 UTF-16 units
    big = {"type": "bubble", "body": {"type": "box", "layout": "vertical",
                                      "contents": [{"type": "text", "text": "x" * 31_000}]}}
    with pytest.raises(FlexLimitError):
        flex_message("alt", big)
    with pytest.raises(FlexLimitError):
        text_message("あ" * 5001)


def test_clip_counts_utf16_and_dates_use_the_shop_time_zone() -> None:
    clipped = clip("😀" * 30, 21)
    assert utf16_len(clipped) <= 21 and clipped.endswith("…")
    assert jp_date(datetime(2037, 12, 1, 16, 0, tzinfo=UTC), "Asia/Tokyo") == "2037年12月2日(水)"
