"""The shared product-card carousel (core.flex_cards) as carts use it: badges, cart lines, limits at build time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from linebot.v3.messaging import Message

from core.flex import FlexLimitError
from core.flex_cards import CardStyle, ProductCard, card_carousel
from core.line_limits import MAX_CAROUSEL_BYTES, utf16_len
from flows.carts.message import cart_messages, line_card, recovery_url, stage_text
from storage.shop_settings import CartSettings
from tests.flex_helpers import flex_texts as texts

URL = "https://bot.example/r/abc"
STYLE = CardStyle(alt_text="カート", button_text="カートを見る", title="カートに商品が残っています")


def card(**fields: Any) -> ProductCard:
    return ProductCard(**{"title": "商品", "url": URL, "price": 1200, "image_url": "https://s.example/i.jpg",
                          **fields})


def test_cart_cards_show_variant_quantity_and_badges_only_when_they_say_something() -> None:
    message = card_carousel([card(variant="Lサイズ", quantity=2, total_stock=2), card(total_stock=0, sold_out=True),
                             card(price=None, total_stock=None), card(total_stock=50)], STYLE)
    bubbles = message["contents"]["contents"]
    assert [texts(b)[1:] for b in bubbles] == [
        ["残りわずか!", "商品", "Lサイズ", "数量: 2", "¥1,200"], ["在庫切れ", "商品", "¥1,200"], ["商品"], ["商品", "¥1,200"]]
    Message.from_dict(message)


def test_a_line_card_from_the_catalogue_or_from_the_cart_alone() -> None:
    product = {"title": "リネンシャツ", "image_url": "https://s.example/shirt.jpg", "price": 8800, "sale_price": 6600,
               "track_inventory": True, "continue_selling": False, "total_stock": 0,
               "variants": [{"id": "v2", "title": "ネイビー / M"}]}
    known = line_card({"product_id": "shirt", "variant_id": "v2", "quantity": 1}, product)
    assert (known.title, known.variant, known.price, known.sale_price, known.sold_out) == (
        "リネンシャツ", "ネイビー / M", 8800, 6600, True)
    priced = line_card({"product_id": "shirt", "quantity": 3, "price": 7000}, {**product, "continue_selling": True})
    assert (priced.price, priced.sale_price, priced.quantity, priced.sold_out) == (7000, None, 3, False)
    unknown = line_card({"product_id": "zz-9", "quantity": 1}, None)
    assert (unknown.title, unknown.price, unknown.image_url, unknown.total_stock) == ("商品 zz-9", None, None, None)
    gone = line_card({"product_id": "zz-9", "quantity": 2, "ref_price": 900}, None)
    assert (gone.price, gone.quantity) == (900, 2)


def test_recovery_url_and_the_more_lines_note() -> None:
    assert recovery_url("https://s.example/c?t={cart_token}&x=1", "a/b c") == "https://s.example/c?t=a%2Fb%20c&x=1"
    settings = CartSettings()
    assert stage_text(settings, "cart", 5, 5) == settings.message_text
    assert stage_text(settings, "checkout", 9, 5).endswith("ほか4点の商品がカートに入っています。")
    long = CartSettings(message_text="あ" * 5000)
    assert utf16_len(stage_text(long, "cart", 9, 5)) == 5000  # the note is left out rather than break the limit


def test_a_cart_message_stays_within_limits_with_the_longest_texts() -> None:
    settings = CartSettings(title="🌟" * 50, alt_text="通" * 1500, button_text="ボ" * 40)
    lines = [{"product_id": f"p{i}", "quantity": 100_000, "price": 1_000_000_000, "title": "長" * 200,
              "image_url": "https://s.example/" + "i" * 1900} for i in range(5)]
    text, flex = cart_messages(settings, "cart", lines, 100, {}, "https://bot.example/r/" + "x" * 900)
    size = len(json.dumps(flex["contents"], ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= MAX_CAROUSEL_BYTES and 1 <= len(flex["contents"]["contents"]) <= 5
    assert "ほか" in text["text"]
    Message.from_dict(flex)


def test_limits_are_refused_at_build_time() -> None:
    with pytest.raises(FlexLimitError):
        card_carousel([card()] * 13, STYLE)
    with pytest.raises(FlexLimitError):
        card_carousel([], STYLE)
    with pytest.raises(FlexLimitError):
        card_carousel([card(url="javascript:alert(1)")], STYLE)
