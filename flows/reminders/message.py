"""The browse-reminder carousel: a step's texts and colours as a card style for the shared builder.

How a card looks and LINE's limits are `core.flex_cards` (shared with carts);
what is shown is `flows.reminders.choice`. This module only maps a
`ReminderStep` onto a `CardStyle`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core import flex_cards
from core.flex import clip as truncate
from core.flex import yen
from core.flex_cards import CardStyle, CardTemplate, ProductCard
from storage.shop_settings import ReminderStep

__all__ = ["CardTemplate", "ProductCard", "assemble_carousel", "bubble_template", "build_reminder_carousel",
           "step_style", "truncate", "yen"]


def step_style(step: ReminderStep) -> CardStyle:
    return CardStyle(
        alt_text=step.alt_text, button_text=step.button_text, button_color=step.button_color, title=step.title,
        title_color=step.title_color, label=step.label, label_color=step.label_color,
        label_background_color=step.label_background_color, low_stock_threshold=step.low_stock_threshold,
        low_stock_label=step.low_stock_label, low_stock_label_color=step.low_stock_label_color,
        low_stock_label_background_color=step.low_stock_label_background_color, coupon_code=step.coupon_code,
        coupon_text=step.coupon_text,
    )


def bubble_template(card: ProductCard, step: ReminderStep) -> CardTemplate:
    """The product's bubble on this step, encoded once and reused across customers (the click URL is joined in
    per customer)."""
    return flex_cards.bubble_template(card, step_style(step))


def assemble_carousel(bubbles: Sequence[tuple[dict[str, Any], int]], step: ReminderStep) -> dict[str, Any]:
    return flex_cards.assemble_carousel(bubbles, step.alt_text)


def build_reminder_carousel(cards: Sequence[ProductCard], step: ReminderStep) -> dict[str, Any]:
    """A Flex message (dict, LINE's JSON) for one reminder step; refuses what LINE would refuse."""
    return flex_cards.card_carousel(cards, step_style(step))
