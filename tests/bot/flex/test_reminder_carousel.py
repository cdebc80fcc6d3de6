"""The reminder carousel builder: content, labels, coupon, and LINE's size limits at build time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from linebot.v3.messaging import Message

from core.flex import clip, yen
from core.line_limits import MAX_ALT_TEXT, MAX_CAROUSEL_BYTES, utf16_len
from flows.reminders.message import ProductCard, build_reminder_carousel
from storage.shop_settings import ReminderStep
from tests.flex_helpers import flex_texts as texts


def card(i: int = 0, **fields: Any) -> ProductCard:
    base = {"title": f"商品{i}", "url": f"https://bot.example/r/{'a' * 32}-{i}", "price": 12800,
            "image_url": f"https://shop.example/img/{i}.jpg", "total_stock": 50}
    return ProductCard(**{**base, **fields})


def test_bubble_content_and_prices() -> None:
    step = ReminderStep(delay_days=3, title="今週の注目商品🌟", label="おすすめ")
    message = build_reminder_carousel([card(0), card(1, sale_price=9800)], step)
    assert message["type"] == "flex" and message["altText"] == step.alt_text
    first, second = message["contents"]["contents"]
    assert {"今週の注目商品🌟", "商品0", "¥12,800", "おすすめ"} <= set(texts(first))
    assert {"¥9,800", "¥12,800"} <= set(texts(second))
    assert first["footer"]["contents"][0]["action"] == {"type": "uri", "label": "商品を見る",
                                                       "uri": f"https://bot.example/r/{'a' * 32}-0"}
    assert first["hero"]["url"] == "https://shop.example/img/0.jpg"
    Message.from_dict(message)  # the SDK accepts it


def test_low_stock_label_only_when_stock_is_low_but_not_zero() -> None:
    step = ReminderStep(delay_days=3, low_stock_threshold=3, low_stock_label="残りわずか!")
    message = build_reminder_carousel([card(0, total_stock=3), card(1, total_stock=4), card(2, total_stock=None)],
                                      step)
    labels = [texts(b["body"]["contents"][0]) for b in message["contents"]["contents"]]
    assert labels == [["残りわずか!"], ["おすすめ"], ["おすすめ"]]


def test_coupon_block_only_on_steps_with_a_coupon() -> None:
    plain = build_reminder_carousel([card()], ReminderStep(delay_days=3))
    coupon = build_reminder_carousel([card()], ReminderStep(delay_days=14, coupon_code="SAVE10", coupon_text="10%OFF"))
    assert "SAVE10" not in json.dumps(plain)
    assert {"SAVE10", "10%OFF"} <= set(texts(coupon))


def test_refuses_too_many_or_no_bubbles() -> None:
    with pytest.raises(ValueError):
        build_reminder_carousel([card(i) for i in range(13)], ReminderStep(delay_days=3))
    with pytest.raises(ValueError):
        build_reminder_carousel([], ReminderStep(delay_days=3))


def test_long_names_and_many_products_stay_within_limits() -> None:
    long_name = "超ロングセラー🌟" * 200
    huge_image = "https://shop.example/" + "i" * 1900
    step = ReminderStep(delay_days=14, title="🌟" * 50, coupon_code="C" * 50, coupon_text="あ" * 100,
                        alt_text="通" * 1500)
    message = build_reminder_carousel([card(i, title=long_name, image_url=huge_image) for i in range(12)], step)
    carousel = message["contents"]
    size = len(json.dumps(carousel, ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= MAX_CAROUSEL_BYTES and 1 <= len(carousel["contents"]) <= 12
    assert utf16_len(message["altText"]) <= MAX_ALT_TEXT
    name = texts(carousel["contents"][0])[2]
    assert name.endswith("…") and utf16_len(name) <= 80


def test_helpers() -> None:
    assert yen(1234567) == "¥1,234,567" and yen(0) == "¥0"
    assert clip("🌟🌟🌟", 4) == "🌟…" and clip("abc", 3) == "abc"


def compact_size(obj: Any) -> int:
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())


def test_a_template_is_reused_across_customers_with_exact_sizes() -> None:
    from flows.reminders.message import assemble_carousel, bubble_template

    step = ReminderStep(delay_days=3, title="注目", coupon_code="SAVE10")
    templates = [bubble_template(card(i), step) for i in range(3)] + [bubble_template(card(9, image_url=None), step)]
    frozen = json.dumps([t.bubble for t in templates])
    for customer in ("a", "b"):
        pairs = [t.with_url(f"https://bot.example/r/{customer * 32}-{i}") for i, t in enumerate(templates)]
        assert all(size == compact_size(bubble) for bubble, size in pairs)
        message = assemble_carousel(pairs, step)
        assert message == build_reminder_carousel(
            [card(i, url=f"https://bot.example/r/{customer * 32}-{i}") for i in range(3)]
            + [card(9, image_url=None, url=f"https://bot.example/r/{customer * 32}-3")], step)
        first = message["contents"]["contents"][0]
        assert first["hero"]["action"]["uri"] == first["footer"]["contents"][0]["action"]["uri"]
        assert first["footer"]["contents"][0]["action"]["uri"].startswith(f"https://bot.example/r/{customer * 32}")
        Message.from_dict(message)
    assert json.dumps([t.bubble for t in templates]) == frozen  # patching never touched the shared template
    with pytest.raises(ValueError):
        templates[0].with_url("javascript:alert(1)")


def test_assembly_drops_bubbles_from_the_end_to_stay_under_50_kb() -> None:
    from flows.reminders.message import assemble_carousel, bubble_template

    step = ReminderStep(delay_days=3)
    big = [bubble_template(card(i, title="あ" * 80, image_url="https://shop.example/" + "i" * 1900), step)
           for i in range(12)]
    pairs = [t.with_url("https://bot.example/r/" + "x" * 900) for t in big]
    message = assemble_carousel(pairs, step)
    kept = message["contents"]["contents"]
    assert 1 <= len(kept) < 12 and compact_size(message["contents"]) <= MAX_CAROUSEL_BYTES
    assert compact_size({"type": "carousel", "contents": kept + [pairs[len(kept)][0]]}) > MAX_CAROUSEL_BYTES
