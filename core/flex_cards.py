"""The product-card Flex carousel every flow sends (browse reminders, carts): one builder, LINE's limits enforced.

A flow decides *what* is shown (which products, in which order, with which
texts and colours: a `CardStyle`); this module decides how a card looks and
refuses what LINE would refuse, at build time: at most 12 bubbles, altText ≤
1,500 UTF-16 units, a bubble ≤ 30 KB, the carousel ≤ 50 KB (bubbles that would
not fit are dropped from the end, never sent for LINE to refuse), action labels
≤ 40, image and URI lengths.

Messages are pushed as JSON bytes: a card's bubble is built and encoded once
with a placeholder URL (`CardTemplate`, shared by every customer shown the same
card in a run), each customer's click URL is joined into the bytes, and the
limits are checked on the exact byte counts (`core.flex.EncodedTemplate`,
`core.flex.encoded_carousel_message`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.flex import (
    ELLIPSIS,
    EncodedTemplate,
    FlexLimitError,
    clip,
    compact_json,
    encoded_carousel_message,
    yen,
)
from core.line_limits import MAX_ALT_TEXT, MAX_BUBBLE_BYTES, MAX_CAROUSEL_BUBBLES, MAX_FLEX_ACTION_LABEL, utf16_len

MAX_NAME = 80  # UTF-16 units of a product name shown (it wraps to at most 3 lines anyway)
MAX_TITLE = 100
MAX_DETAIL = 60  # a variant's name
MAX_IMAGE_URL = 2000  # LINE's limit for an image URL
MAX_ACTION_URI = 1000  # LINE's limit for a URI action
URL_SLOT = "https://slot.invalid/"  # stands for the click URL in a template (ASCII: JSON bytes = length)


@dataclass(frozen=True)
class ProductCard:
    """One product as the customer sees it; `url` is our click redirect, not the shop's URL."""

    title: str
    url: str
    price: int | None  # yen; None: not shown (e.g. a cart line whose price nobody knows)
    sale_price: int | None = None
    image_url: str | None = None
    total_stock: int | None = None  # None when the shop does not track this product's stock
    variant: str | None = None  # the variant's name (a cart line)
    quantity: int | None = None  # how many (a cart line)
    sold_out: bool = False  # marked, not hidden (a cart line the shop cannot sell now)


@dataclass(frozen=True)
class CardStyle:
    """A flow's texts and colours for its cards (browse reminders: one per step; carts: one per stage)."""

    alt_text: str
    button_text: str
    button_color: str = "#06C755"
    title: str | None = None  # the header above every card
    title_color: str = "#111111"
    label: str | None = None  # the badge of a card in stock (None: no badge)
    label_color: str = "#FFFFFF"
    label_background_color: str = "#06C755"
    low_stock_threshold: int = 3  # summed stock at or below this (and above 0): the low-stock badge
    low_stock_label: str = "残りわずか!"
    low_stock_label_color: str = "#FFFFFF"
    low_stock_label_background_color: str = "#E53935"
    sold_out_label: str = "在庫切れ"
    sold_out_label_color: str = "#FFFFFF"
    sold_out_label_background_color: str = "#9E9E9E"
    coupon_code: str | None = None
    coupon_text: str | None = None


def is_low_stock(total_stock: int | None, threshold: int) -> bool:
    return total_stock is not None and 0 < total_stock <= threshold


def _badge(text: str, colour: str, background: str) -> dict[str, Any]:
    return {
        "type": "box",
        "layout": "horizontal",
        "contents": [{"type": "text", "text": text, "size": "xs", "color": colour, "weight": "bold", "flex": 0}],
        "backgroundColor": background,
        "cornerRadius": "md",
        "paddingAll": "4px",
        "paddingStart": "8px",
        "paddingEnd": "8px",
        "flex": 0,
    }


def _label(card: ProductCard, style: CardStyle) -> dict[str, Any] | None:
    if card.sold_out:
        return _badge(style.sold_out_label, style.sold_out_label_color, style.sold_out_label_background_color)
    if is_low_stock(card.total_stock, style.low_stock_threshold):
        return _badge(style.low_stock_label, style.low_stock_label_color, style.low_stock_label_background_color)
    if style.label:
        return _badge(style.label, style.label_color, style.label_background_color)
    return None


def _price(card: ProductCard) -> dict[str, Any] | None:
    if card.price is None:
        return None
    if card.sale_price is not None and card.sale_price < card.price:
        return {
            "type": "box",
            "layout": "baseline",
            "spacing": "sm",
            "contents": [
                {"type": "text", "text": yen(card.sale_price), "size": "lg", "weight": "bold", "color": "#E53935",
                 "flex": 0},
                {"type": "text", "text": yen(card.price), "size": "sm", "color": "#999999",
                 "decoration": "line-through", "flex": 0},
            ],
        }
    return {"type": "text", "text": yen(card.price), "size": "lg", "weight": "bold", "color": "#111111"}


def _details(card: ProductCard) -> list[dict[str, Any]]:
    """A cart line's variant and quantity, small and grey under the name."""
    lines = []
    if card.variant:
        lines.append(clip(card.variant, MAX_DETAIL))
    if card.quantity is not None:
        lines.append(f"数量: {card.quantity:,}")
    return [{"type": "text", "text": text, "size": "xs", "color": "#777777", "wrap": True, "maxLines": 2}
            for text in lines]


def _coupon(style: CardStyle) -> dict[str, Any] | None:
    if not style.coupon_code:
        return None
    contents: list[dict[str, Any]] = []
    if style.coupon_text:
        contents.append({"type": "text", "text": style.coupon_text, "size": "xs", "wrap": True, "color": "#555555"})
    contents.append({"type": "text", "text": style.coupon_code, "size": "md", "weight": "bold", "color": "#111111",
                     "align": "center"})
    return {"type": "box", "layout": "vertical", "spacing": "xs", "contents": contents,
            "backgroundColor": "#FFF4E5", "cornerRadius": "md", "paddingAll": "8px", "margin": "md"}


def check_url(url: str) -> None:
    """A button's URL as LINE takes it (http(s), at most 1,000 characters)."""
    if utf16_len(url) > MAX_ACTION_URI or not url.startswith(("https://", "http://")):
        raise FlexLimitError("a card's button URL must be an http(s) URL of at most 1000 characters")


def _bubble(card: ProductCard, style: CardStyle) -> dict[str, Any]:
    check_url(card.url)
    action = {"type": "uri", "label": clip(style.button_text, MAX_FLEX_ACTION_LABEL), "uri": card.url}
    body: list[dict[str, Any]] = []
    label = _label(card, style)
    if label is not None:
        body.append({"type": "box", "layout": "horizontal", "contents": [label]})
    body.append({"type": "text", "text": clip(card.title, MAX_NAME) or ELLIPSIS, "weight": "bold", "size": "md",
                 "wrap": True, "maxLines": 3, "margin": "md"})
    body += _details(card)
    price = _price(card)
    if price is not None:
        body.append(price)
    coupon = _coupon(style)
    if coupon is not None:
        body.append(coupon)
    bubble: dict[str, Any] = {"type": "bubble", "size": "kilo"}
    title = clip(style.title, MAX_TITLE) if style.title else None
    if title:
        bubble["header"] = {
            "type": "box", "layout": "vertical", "paddingAll": "10px",
            "contents": [{"type": "text", "text": title, "weight": "bold", "size": "sm", "color": style.title_color,
                          "wrap": True, "maxLines": 2}],
        }
    image = card.image_url
    if image and image.startswith("https://") and len(image) <= MAX_IMAGE_URL:
        bubble["hero"] = {"type": "image", "url": image, "size": "full", "aspectRatio": "1:1",
                          "aspectMode": "cover", "action": {"type": "uri", "uri": card.url}}
    bubble["body"] = {"type": "box", "layout": "vertical", "spacing": "sm", "contents": body}
    bubble["footer"] = {
        "type": "box", "layout": "vertical",
        "contents": [{"type": "button", "style": "primary", "color": style.button_color, "height": "sm",
                      "action": action}],
    }
    return bubble


class CardTemplate:
    """One card's bubble encoded once (`core.flex.EncodedTemplate`) with the click URL left open.

    Everything but the click URL is the same for every customer shown this
    card, so a run encodes it once and `fill` joins each customer's URL into the
    bytes (hero and button); the size is exact without encoding again. Never
    mutate `bubble` (templates are shared across customers).
    """

    __slots__ = ("bubble", "encoded")

    def __init__(self, card: ProductCard, style: CardStyle) -> None:
        self.bubble = _bubble(replace(card, url=URL_SLOT), style)
        self.encoded = EncodedTemplate(self.bubble, URL_SLOT)

    @property
    def size(self) -> int:
        """Bytes of the encoded bubble without its URLs."""
        return self.encoded.size

    def fill(self, url: str) -> bytes:
        """The bubble with this click URL, as compact UTF-8 JSON (refused over 30 KB or with a bad URL)."""
        check_url(url)
        encoded = self.encoded.fill(url)
        if len(encoded) > MAX_BUBBLE_BYTES:
            raise FlexLimitError(f"a card's bubble is over LINE's {MAX_BUBBLE_BYTES} byte limit")
        return encoded

    def with_url(self, url: str) -> tuple[dict[str, Any], int]:
        """(the bubble with this click URL as LINE's JSON object, its exact size): for dry runs and tests."""
        encoded = self.fill(url)
        return json.loads(encoded), len(encoded)


def bubble_template(card: ProductCard, style: CardStyle) -> CardTemplate:
    """The bubble of `card` (its `url` is ignored) in `style`, ready to be reused across customers."""
    return CardTemplate(card, style)


def carousel_message(alt_text: str, bubbles: Sequence[bytes]) -> bytes:
    """The Flex carousel message (compact JSON bytes) of encoded bubbles; the alt text cut to LINE's limit.

    Bubbles that would take it over 50 KB are dropped from the end (`core.flex.encoded_carousel_message`).
    """
    return encoded_carousel_message(clip(alt_text, MAX_ALT_TEXT) or ELLIPSIS, bubbles)


def assemble_carousel(bubbles: Sequence[tuple[dict[str, Any], int]], alt_text: str) -> dict[str, Any]:
    """The Flex message (LINE's JSON object) from (bubble, size) pairs, through the same limits."""
    return dict(json.loads(carousel_message(alt_text, [compact_json(bubble) for bubble, _ in bubbles])))


def card_carousel(cards: Sequence[ProductCard], style: CardStyle) -> dict[str, Any]:
    """A Flex message (LINE's JSON object) of these cards, each with its own `url`; refuses what LINE would."""
    if len(cards) > MAX_CAROUSEL_BUBBLES:
        raise FlexLimitError(f"a carousel holds at most {MAX_CAROUSEL_BUBBLES} bubbles, got {len(cards)}")
    return dict(json.loads(carousel_message(style.alt_text, [CardTemplate(card, style).fill(card.url)
                                                             for card in cards])))
