"""The cart reminder: the stage's text, then a carousel of the cart's lines (the shared card builder).

Each card shows a line as the customer left it — image, name, variant,
quantity, unit price in yen — with the low-stock badge when the product's
summed stock is at or below the shop's threshold and a sold-out badge when the
shop cannot sell it now (marked, never hidden: it is the customer's cart). A
line whose product is not (or no longer) in the catalogue is still shown, from
what the cart itself says. Every button opens the recovery URL through our
click redirect. Never decides whether to send.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from core.flex import carousel_fit, compact_json, text_message
from core.flex_cards import CardStyle, CardTemplate, ProductCard, carousel_message
from core.line_limits import MAX_TEXT, utf16_len
from storage.shop_settings import CartSettings

MORE_LINES = "\n\nほか{count}点の商品がカートに入っています。"


def recovery_url(template: str, cart_token: str) -> str:
    """The shop's URL that reopens this cart (the token percent-encoded into the template's slot)."""
    return template.replace("{cart_token}", quote(cart_token, safe=""))


def stage_style(settings: CartSettings, stage: str) -> CardStyle:
    checkout = stage == "checkout"
    return CardStyle(
        alt_text=settings.checkout_alt_text if checkout else settings.alt_text,
        title=settings.checkout_title if checkout else settings.title,
        button_text=settings.button_text, button_color=settings.button_color, label=None,
        low_stock_threshold=settings.low_stock_threshold, low_stock_label=settings.low_stock_label,
        sold_out_label=settings.sold_out_label,
    )


def stage_text(settings: CartSettings, stage: str, line_count: int, shown: int) -> str:
    text = settings.checkout_message_text if stage == "checkout" else settings.message_text
    more = line_count - shown
    if more > 0:
        note = MORE_LINES.format(count=more)
        if utf16_len(text + note) <= MAX_TEXT:
            text += note
    return text


def _variant_title(product: Mapping[str, Any], variant_id: str | None) -> str | None:
    if not variant_id:
        return None
    for variant in product.get("variants") or []:
        if variant.get("id") == variant_id:
            return str(variant.get("title") or "") or None
    return None


def line_card(line: Mapping[str, Any], product: Mapping[str, Any] | None) -> ProductCard:
    """One cart line as a card: the catalogue's name, image and stock when the product is known, else the line's."""
    known = product or {}
    tracked = bool(known.get("track_inventory"))
    stock = int(known.get("total_stock") or 0) if tracked else None
    price = line.get("price")
    sale_price = None
    if price is None and product is not None and known.get("price") is not None:
        price, sale_price = int(known["price"]), known.get("sale_price")
    elif price is None:
        price = line.get("ref_price")  # gone from the catalogue: its price when the line arrived
    return ProductCard(
        title=str(known.get("title") or line.get("title") or f"商品 {line.get('product_id')}"),
        url="", price=int(price) if price is not None else None, sale_price=sale_price,
        image_url=known.get("image_url") or line.get("image_url"), total_stock=stock,
        variant=_variant_title(known, line.get("variant_id")), quantity=int(line.get("quantity") or 1),
        sold_out=tracked and not known.get("continue_selling") and (stock or 0) <= 0,
    )


class CartCards:
    """One shop's cart messages in one run: each distinct card (product, variant, quantity, price) is built and
    encoded once and shared by every cart that shows it; only the click URL is joined in per customer."""

    MAX_TEMPLATES = 2_000  # beyond this, cards are encoded per message (memory stays bounded)

    def __init__(self, settings: CartSettings) -> None:
        self.settings = settings
        self._styles = {stage: stage_style(settings, stage) for stage in ("cart", "checkout")}
        self._templates: dict[tuple[str, ProductCard], CardTemplate] = {}

    def _template(self, stage: str, card: ProductCard) -> CardTemplate:
        key = (stage, card)
        template = self._templates.get(key)
        if template is None:
            template = CardTemplate(card, self._styles[stage])
            if len(self._templates) < self.MAX_TEMPLATES:
                self._templates[key] = template
        return template

    def encoded(self, stage: str, lines: Sequence[Mapping[str, Any]], line_count: int,
                products: Mapping[str, Mapping[str, Any]], click_url: str) -> bytes:
        """The push's messages as one JSON array (compact UTF-8): the stage's text, then the carousel of the
        lines (each button → `click_url`)."""
        stage = "checkout" if stage == "checkout" else "cart"
        bubbles = [self._template(stage, line_card(line, products.get(str(line.get("product_id"))))).fill(click_url)
                   for line in lines]
        carousel = carousel_message(self._styles[stage].alt_text, bubbles)
        text = text_message(stage_text(self.settings, stage, line_count, carousel_fit(bubbles)))
        return b"[" + compact_json(text) + b"," + carousel + b"]"


def cart_messages(settings: CartSettings, stage: str, lines: Sequence[Mapping[str, Any]], line_count: int,
                  products: Mapping[str, Mapping[str, Any]], click_url: str) -> list[dict[str, Any]]:
    """The push's messages as LINE's JSON objects (dry runs and tests; the run pushes `CartCards.encoded`)."""
    return list(json.loads(CartCards(settings).encoded(stage, lines, line_count, products, click_url)))
