"""The browse-reminder Flex carousel: one bubble per product, the shop's texts and colours.

It decides how things look, never what is shown (that is
`flows.reminders.choice`). LINE's limits are enforced here, at build time:
at most 12 bubbles, altText ≤ 1,500 UTF-16 units, a bubble ≤ 30 KB and the
carousel ≤ 50 KB (bubbles that would not fit are dropped from the end, never
sent for LINE to refuse), action labels ≤ 40, image/URI lengths.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.flex import ELLIPSIS, yen
from core.flex import clip as truncate
from core.line_limits import (
    MAX_ALT_TEXT,
    MAX_BUBBLE_BYTES,
    MAX_CAROUSEL_BUBBLES,
    MAX_CAROUSEL_BYTES,
    MAX_FLEX_ACTION_LABEL,
    utf16_len,
)
from storage.shop_settings import ReminderStep

MAX_NAME = 80  # UTF-16 units of a product name shown (it wraps to at most 3 lines anyway)
MAX_TITLE = 100
MAX_IMAGE_URL = 2000  # LINE's limit for an image URL
MAX_ACTION_URI = 1000  # LINE's limit for a URI action


@dataclass(frozen=True)
class ProductCard:
    """One product as the customer sees it; `url` is our click redirect, not the shop's URL."""

    title: str
    url: str
    price: int
    sale_price: int | None = None
    image_url: str | None = None
    total_stock: int | None = None  # None when the shop does not track this product's stock


def is_low_stock(total_stock: int | None, threshold: int) -> bool:
    return total_stock is not None and 0 < total_stock <= threshold


def _label(card: ProductCard, step: ReminderStep) -> dict[str, Any]:
    low = is_low_stock(card.total_stock, step.low_stock_threshold)
    text = step.low_stock_label if low else step.label
    colour = step.low_stock_label_color if low else step.label_color
    background = step.low_stock_label_background_color if low else step.label_background_color
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


def _price(card: ProductCard) -> dict[str, Any]:
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


def _coupon(step: ReminderStep) -> dict[str, Any] | None:
    if not step.coupon_code:
        return None
    contents: list[dict[str, Any]] = []
    if step.coupon_text:
        contents.append({"type": "text", "text": step.coupon_text, "size": "xs", "wrap": True, "color": "#555555"})
    contents.append({"type": "text", "text": step.coupon_code, "size": "md", "weight": "bold", "color": "#111111",
                     "align": "center"})
    return {"type": "box", "layout": "vertical", "spacing": "xs", "contents": contents,
            "backgroundColor": "#FFF4E5", "cornerRadius": "md", "paddingAll": "8px", "margin": "md"}


def _check_url(url: str) -> None:
    if utf16_len(url) > MAX_ACTION_URI or not url.startswith(("https://", "http://")):
        raise ValueError("a reminder button URL must be an http(s) URL of at most 1000 characters")


def _bubble(card: ProductCard, step: ReminderStep, title: str | None) -> dict[str, Any]:
    _check_url(card.url)
    action = {"type": "uri", "label": truncate(step.button_text, MAX_FLEX_ACTION_LABEL), "uri": card.url}
    body: list[dict[str, Any]] = [
        {"type": "box", "layout": "horizontal", "contents": [_label(card, step)]},
        {"type": "text", "text": truncate(card.title, MAX_NAME) or ELLIPSIS, "weight": "bold", "size": "md",
         "wrap": True, "maxLines": 3, "margin": "md"},
        _price(card),
    ]
    coupon = _coupon(step)
    if coupon is not None:
        body.append(coupon)
    bubble: dict[str, Any] = {"type": "bubble", "size": "kilo"}
    if title:
        bubble["header"] = {
            "type": "box", "layout": "vertical", "paddingAll": "10px",
            "contents": [{"type": "text", "text": title, "weight": "bold", "size": "sm", "color": step.title_color,
                          "wrap": True, "maxLines": 2}],
        }
    image = card.image_url
    if image and image.startswith("https://") and len(image) <= MAX_IMAGE_URL:
        bubble["hero"] = {"type": "image", "url": image, "size": "full", "aspectRatio": "1:1",
                          "aspectMode": "cover", "action": {"type": "uri", "uri": card.url}}
    bubble["body"] = {"type": "box", "layout": "vertical", "spacing": "sm", "contents": body}
    bubble["footer"] = {
        "type": "box", "layout": "vertical",
        "contents": [{"type": "button", "style": "primary", "color": step.button_color, "height": "sm",
                      "action": action}],
    }
    return bubble


URL_SLOT = "https://slot.invalid/"  # stands for the click URL in a template (ASCII: JSON bytes = length)


@dataclass(frozen=True)
class BubbleTemplate:
    """One product's bubble for one step with the click URL left open, and its JSON size.

    Everything but the click URL is the same for every customer shown this
    product on this step, so a run builds it once and `with_url` patches the
    two places the URL goes (hero and button) with a few shallow copies; the
    size is then known without serialising again. Never mutate `bubble`.
    """

    bubble: dict[str, Any]
    size: int  # bytes of compact UTF-8 JSON with URL_SLOT in place of the URL
    url_slots: int  # how many times the URL appears

    def with_url(self, url: str) -> tuple[dict[str, Any], int]:
        """(bubble with this click URL, its exact JSON size); the template is left untouched."""
        _check_url(url)
        bubble = dict(self.bubble)
        if "hero" in bubble:
            hero = dict(bubble["hero"])
            hero["action"] = {**hero["action"], "uri": url}
            bubble["hero"] = hero
        footer = dict(bubble["footer"])
        button = dict(footer["contents"][0])
        button["action"] = {**button["action"], "uri": url}
        footer["contents"] = [button]
        bubble["footer"] = footer
        size = self.size + self.url_slots * (_json_len(url) - _json_len(URL_SLOT))
        if size > MAX_BUBBLE_BYTES:
            raise ValueError("a reminder bubble is over LINE's 30 KB limit")
        return bubble, size


def bubble_template(card: ProductCard, step: ReminderStep) -> BubbleTemplate:
    """The bubble of `card` (its `url` is ignored) on `step`, ready to be reused across customers."""
    title = truncate(step.title, MAX_TITLE) if step.title else None
    bubble = _bubble(replace(card, url=URL_SLOT), step, title)
    return BubbleTemplate(bubble, _size(bubble), 2 if "hero" in bubble else 1)


def _json_len(text: str) -> int:
    """Bytes of a string as a JSON value (quotes and escapes included)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


def _size(obj: Any) -> int:
    """Bytes as LINE measures JSON (UTF-8, compact)."""
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


_EMPTY_CAROUSEL = len('{"type":"carousel","contents":[]}')


def assemble_carousel(bubbles: Sequence[tuple[dict[str, Any], int]], step: ReminderStep) -> dict[str, Any]:
    """The Flex message from (bubble, JSON size) pairs; bubbles that would break 50 KB are dropped from the end.

    The sizes add up exactly to the compact JSON's (bubbles plus commas), so
    LINE's limits are checked without serialising the carousel.
    """
    if not bubbles:
        raise ValueError("a reminder carousel needs at least one product")
    if len(bubbles) > MAX_CAROUSEL_BUBBLES:
        raise ValueError(f"a carousel holds at most {MAX_CAROUSEL_BUBBLES} bubbles, got {len(bubbles)}")
    kept: list[dict[str, Any]] = []
    total = _EMPTY_CAROUSEL
    for bubble, size in bubbles:
        if size > MAX_BUBBLE_BYTES:
            raise ValueError("a reminder bubble is over LINE's 30 KB limit")
        grown = total + size + (1 if kept else 0)
        if kept and grown > MAX_CAROUSEL_BYTES:
            break
        kept.append(bubble)
        total = grown
    return {"type": "flex", "altText": truncate(step.alt_text, MAX_ALT_TEXT),
            "contents": {"type": "carousel", "contents": kept}}


def build_reminder_carousel(cards: Sequence[ProductCard], step: ReminderStep) -> dict[str, Any]:
    """A Flex message (dict, LINE's JSON) for one reminder step; refuses what LINE would refuse."""
    if len(cards) > MAX_CAROUSEL_BUBBLES:
        raise ValueError(f"a carousel holds at most {MAX_CAROUSEL_BUBBLES} bubbles, got {len(cards)}")
    return assemble_carousel([bubble_template(card, step).with_url(card.url) for card in cards], step)
