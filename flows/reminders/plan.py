"""Browse reminders as a flow of the delivery engine: per-run caches, the decision, the message.

The engine hands the flow each contact whose `flows.reminders` sub-state is
due, joined with its customer and its `reminder_profiles` document (views and
purchases kept at ingest); each shop's settings and catalogue (products plus
similar-product lists) are read once per run with one indexed scan. No reads
per customer, no sends, no writes: the engine does those, and the dry run
(`preview`) calls the same `plan_item`, so a preview is exactly what is sent.

The Flex message is built as JSON bytes: each product's bubble for a step is
built and encoded once per run (`core.flex_cards.CardTemplate`) and shared by every customer
shown it; only the click URLs, which name the delivery, are joined in per
customer, and LINE's size limits are checked on the exact byte counts.

Frequency cap: a capped step is deferred until the cap allows it, and dropped
(`frequency_cap`) when that would be after the next step falls due (the next
step supersedes it) — for the last step, after a week.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.cursor import AsyncCursor

from core.clock import as_utc
from core.flex_cards import CardTemplate, carousel_message
from delivery.clicks import Click, click_secret, click_url
from delivery.flow import Intent, IntentKind, delivery_key
from delivery.windows import quiet_window
from flows.reminders.choice import Candidates, candidate_lists
from flows.reminders.decide import CustomerFacts, Decision, decide
from flows.reminders.message import ProductCard, bubble_template
from flows.reminders.profile import bought_products, view_stats
from flows.reminders.timing import step_due_at
from storage.contacts import Lookup
from storage.database import Database, Document
from storage.products import ProductRepository
from storage.shop_settings import ReminderSettings, ReminderStep, ShopSettingsRepository
from storage.shops import Shop

CAMPAIGN = "reminders"  # the flow's name in reports, retry keys and click links
STATE_KEY = "reminders"  # its key in a contact's `flows`
CANDIDATES_PER_LIST = 20
LAST_STEP_STALE = timedelta(days=7)


PRODUCT_FIELDS = {
    "shop_id": 1, "product_id": 1, "title": 1, "url": 1, "image_url": 1, "price": 1, "sale_price": 1, "category": 1,
    "tags": 1, "published": 1, "track_inventory": 1, "continue_selling": 1, "total_stock": 1, "available": 1,
    "sold_count": 1,
}


def catalogue_cursor(database: Database, shop_id: str) -> AsyncCursor[Document]:
    """The shop's whole catalogue, projected to what a card and the product choice need."""
    return ProductRepository(database).catalogue(shop_id, PRODUCT_FIELDS)


@dataclass
class ShopCatalogue:
    """One shop's settings, products and similar-product lists, read once per run.

    Memory is bounded by the catalogue (the projected fields only), not by the
    number of customers; every viewed product is in it, so no per-batch reads.
    """

    shop: Shop
    settings: ReminderSettings
    products: dict[str, Document] = field(default_factory=dict)
    similar: Candidates = field(default_factory=Candidates)
    click_key: bytes = b""


@dataclass
class Planned:
    """The flow's decision for one contact, with what a send needs; `encoded` is set only for a send."""

    contact: Document
    shop_id: str
    decision: Decision
    step: ReminderStep | None = None
    key: str | None = None
    encoded: bytes | None = None  # the Flex message as pushed (compact UTF-8 JSON)
    products: list[Document] = field(default_factory=list)

    @property
    def message(self) -> dict[str, Any] | None:
        """The message as LINE's JSON object (the dry run shows it); decoded from what is pushed."""
        return json.loads(self.encoded) if self.encoded is not None else None

    @property
    def line_user_id(self) -> str:
        return str(self.contact.get("line_user_id") or "")

    @property
    def reminder(self) -> Mapping[str, Any]:
        return ((self.contact.get("flows") or {}).get(STATE_KEY)) or {}

    @property
    def cycle_id(self) -> str:
        return str(self.reminder.get("cycle_id") or "")


class RemindersFlow:
    """The browse-reminder flow (PRODUCT.md §3); one per run, holding the run's caches."""

    name = CAMPAIGN
    lookups = (Lookup("reminder_profiles", "profile"),)

    def __init__(self, public_base: str) -> None:
        self._public_base = public_base
        self._shops: dict[str, ShopCatalogue | None] = {}
        self._bubbles: dict[tuple[str, int, str], CardTemplate] = {}  # (shop, step index, product) → bubble

    def owns(self, state_key: str) -> bool:
        return state_key == STATE_KEY

    async def prepare(self, database: Database, shop_ids: Collection[str]) -> None:
        missing = sorted(s for s in shop_ids if s not in self._shops)
        if not missing:
            return
        docs = {doc["_id"]: doc async for doc in database.shops.find({"_id": {"$in": missing}})}
        settings = await ShopSettingsRepository(database).get_many(missing, ReminderSettings)
        for shop_id in missing:
            doc = docs.get(shop_id)
            if doc is None:
                self._shops[shop_id] = None
                continue
            shop = Shop.from_doc(doc)
            products = {p["product_id"]: p async for p in catalogue_cursor(database, shop_id)}
            self._shops[shop_id] = ShopCatalogue(shop, settings[shop_id], products,
                                                 candidate_lists(products.values(), CANDIDATES_PER_LIST),
                                                 click_secret(shop.line.channel_secret))

    def catalogue(self, shop_id: str) -> ShopCatalogue | None:
        return self._shops.get(shop_id)

    def plan(self, contact: Document, state_key: str, state: Mapping[str, Any], now: datetime) -> Intent:
        return self.intent(self.plan_item(contact, now), now)

    def plan_item(self, contact: Document, now: datetime) -> Planned:
        """The decision for one contact at `now` (after `prepare` for its shop)."""
        shop_id = str(contact.get("shop_id") or "")
        cat = self._shops.get(shop_id)
        customer = contact.get("customer")
        if cat is None:
            return Planned(contact, shop_id, Decision("inactive", reason="unknown_shop", state={"due_at": None}))
        if customer is None:
            return Planned(contact, shop_id,
                           Decision("inactive", reason="unknown_customer", state={"due_at": None}))
        profile = contact.get("profile")
        planned = Planned(contact, shop_id, Decision("inactive"))
        facts = CustomerFacts(customer=customer, reminder=planned.reminder, views=view_stats(profile),
                              bought=bought_products(profile))
        decision = planned.decision = decide(facts, cat.settings, cat.products, cat.similar, now)
        if decision.step is None or decision.kind not in ("send", "skip"):
            return planned
        planned.step = cat.settings.steps[decision.step]
        planned.key = delivery_key(shop_id, planned.line_user_id, CAMPAIGN, planned.cycle_id, decision.step + 1)
        if decision.kind == "send" and decision.choice is not None:
            planned.products = [cat.products[s.product_id] for s in decision.choice.shown]
            bubbles = [self._template(cat, decision.step, planned.step, p).fill(
                click_url(self._public_base, cat.click_key,
                          Click(shop_id, CAMPAIGN, decision.step + 1, planned.key, f"p:{p['product_id']}")))
                for p in planned.products]
            planned.encoded = carousel_message(planned.step.alt_text, bubbles)
        return planned

    def intent(self, item: Planned, now: datetime) -> Intent:
        decision = item.decision
        reminder = item.reminder
        expects = {"cycle_id": reminder.get("cycle_id"), "next_step": reminder.get("next_step"), "status": "active"}
        if decision.kind in ("send", "skip") and decision.step is not None:
            cat = self._shops[item.shop_id]
            assert cat is not None
            detail: dict[str, Any] = {"products": [{"product_id": s.product_id, "reason": s.reason}
                                                   for s in (decision.choice.shown if decision.choice else [])]}
            if decision.superseded:
                detail["superseded_steps"] = [s + 1 for s in decision.superseded]
            return Intent(
                flow=CAMPAIGN, state_key=STATE_KEY, kind=decision.kind, state=decision.state,
                step=decision.step + 1, cycle=item.cycle_id, reason=decision.reason, due_at=decision.due_at,
                encoded=b"[" + item.encoded + b"]" if item.encoded is not None else None, key=item.key,
                window=quiet_window(cat.settings.quiet_hours), stale_after=self._stale_after(cat, item, decision),
                detail=detail, expects=expects)
        kind: IntentKind = "wait" if decision.kind == "wait" else "end"
        return Intent(flow=CAMPAIGN, state_key=STATE_KEY, kind=kind, state=decision.state, reason=decision.reason,
                      due_at=decision.due_at, expects=expects)

    @staticmethod
    def _stale_after(cat: ShopCatalogue, item: Planned, decision: Decision) -> datetime | None:
        steps = cat.settings.steps
        anchor = item.reminder.get("cycle_started_at")
        if decision.step is None or anchor is None:
            return None
        if decision.step + 1 < len(steps):
            return step_due_at(as_utc(anchor), steps[decision.step + 1].delay_days)
        return (decision.due_at or as_utc(anchor)) + LAST_STEP_STALE

    def _template(self, cat: ShopCatalogue, step_index: int, step: ReminderStep, product: Document) -> CardTemplate:
        """The product's bubble on this step, built and encoded on first use in the run (the catalogue is
        fixed per run); each customer's click URL is filled into the encoded bytes."""
        key = (cat.shop.shop_id, step_index, product["product_id"])
        template = self._bubbles.get(key)
        if template is None:
            card = ProductCard(
                title=str(product.get("title") or ""), url="", price=int(product.get("price") or 0),
                sale_price=product.get("sale_price"), image_url=product.get("image_url"),
                total_stock=int(product.get("total_stock") or 0) if product.get("track_inventory") else None,
            )
            template = self._bubbles[key] = bubble_template(card, step)
        return template
