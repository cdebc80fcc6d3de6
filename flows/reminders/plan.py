"""Turn a batch of customers into planned actions: read what they need by `_id`, decide, build.

Shared by the worker and the admin dry run, so a preview is exactly what would
be sent. Reads per batch, never per customer, and never scans raw events: the
customers arrive with their reminder state (`storage.reminders.with_state`),
their `reminder_profiles` (views and purchases kept at ingest) are one chunked
`_id` read, and each shop's catalogue (products plus similar-product lists) is read once per run with one
indexed scan. Delivery records are looked up only for customers a crashed run
may have left half done. No sends, no claims, no writes.

The Flex JSON is plain dicts: each product's bubble for a step is built once
per run (`BubbleTemplate`) and shared by every customer shown it; only the
click URL, which names the delivery, is patched in per customer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.cursor import AsyncCursor

from core.line_client import retry_key_for
from flows.reminders.choice import Candidates, ViewStat, candidate_lists
from flows.reminders.decide import CustomerFacts, Decision, decide
from flows.reminders.message import BubbleTemplate, ProductCard, assemble_carousel, bubble_template
from flows.reminders.profile import bought_products, view_stats
from storage.database import Database, Document
from storage.deliveries import DeliveryRepository
from storage.reminders import ReminderProfileRepository
from storage.schema import INDEXES
from storage.shop_settings import ReminderSettings, ReminderStep, ShopSettingsRepository
from storage.shops import Shop

CAMPAIGN = "reminders"
CANDIDATES_PER_LIST = 20


def index_for(collection: str, *fields: str) -> list[tuple[str, int]] | None:
    """The keys of a declared index starting with `fields` (owned by storage.browsers/orders/products).

    SecantusDB's planner scans the collection when a filter has more fields than
    an index, so our queries name the index they rely on; looked up, not
    copied, so a change of direction or suffix in the owner's declaration follows.
    """
    for spec in INDEXES:
        keys = list(spec.keys)
        if spec.collection == collection and tuple(k for k, _ in keys[: len(fields)]) == fields:
            return [(k, int(d)) for k, d in keys]
    return None


def hinted(cursor: AsyncCursor[Document], keys: list[tuple[str, int]] | None) -> AsyncCursor[Document]:
    return cursor.hint(keys) if keys else cursor


PRODUCT_FIELDS = {
    "shop_id": 1, "product_id": 1, "title": 1, "url": 1, "image_url": 1, "price": 1, "sale_price": 1, "category": 1, "tags": 1,
    "published": 1, "track_inventory": 1, "continue_selling": 1, "total_stock": 1, "available": 1, "sold_count": 1,
}


def catalogue_cursor(database: Database, shop_id: str) -> AsyncCursor[Document]:
    """The shop's whole catalogue through its (shop_id, product_id) index, projected to what a card needs."""
    return hinted(database["products"].find({"shop_id": shop_id}, PRODUCT_FIELDS),
                  index_for("products", "shop_id", "product_id"))


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

    def candidates(self) -> Candidates:
        return self.similar


@dataclass
class Planned:
    """What to do for one customer; `message` is set only for a send."""

    customer: Document
    shop_id: str
    decision: Decision
    step: ReminderStep | None = None
    delivery_id: str | None = None
    key: str | None = None
    message: dict[str, Any] | None = None  # LINE's JSON, pushed as is (the dry run shows it); never mutate
    products: list[Document] = field(default_factory=list)
    recorded: Document | None = None  # a delivery already recorded for this step (crash recovery)

    @property
    def line_user_id(self) -> str:
        return str(self.customer["line_user_id"])

    @property
    def cycle_id(self) -> str | None:
        return (self.customer.get("reminder") or {}).get("cycle_id")


def delivery_identity(shop_id: str, line_user_id: str, cycle_id: str, step_index: int) -> tuple[str, str]:
    """(retry key = delivery _id, readable key) for one step of one cycle: the same on every retry."""
    step = step_index + 1
    return (retry_key_for(shop_id, line_user_id, CAMPAIGN, cycle_id, step),
            f"{CAMPAIGN}:{line_user_id}:{cycle_id}:{step}")


def click_url(public_base: str, delivery_id: str, index: int) -> str:
    return f"{public_base.rstrip('/')}/r/{delivery_id.replace('-', '')}-{index}"


class Planner:
    """Per-run caches plus the batch planning; cheap to create, one per run."""

    def __init__(self, database: Database, public_base: str) -> None:
        self._db = database
        self._public_base = public_base
        self._shops: dict[str, ShopCatalogue | None] = {}
        self._bubbles: dict[tuple[str, int, str], BubbleTemplate] = {}  # (shop, step index, product) → bubble

    async def _ensure_shops(self, shop_ids: Iterable[str]) -> None:
        missing = sorted({s for s in shop_ids if s not in self._shops})
        if not missing:
            return
        docs = {doc["_id"]: doc async for doc in self._db.shops.find({"_id": {"$in": missing}})}
        settings = await ShopSettingsRepository(self._db).get_many(missing, ReminderSettings)
        for shop_id in missing:
            doc = docs.get(shop_id)
            if doc is None:
                self._shops[shop_id] = None
                continue
            products = {p["product_id"]: p async for p in catalogue_cursor(self._db, shop_id)}
            self._shops[shop_id] = ShopCatalogue(Shop.from_doc(doc), settings[shop_id], products,
                                                 candidate_lists(products.values(), CANDIDATES_PER_LIST))

    def catalogue(self, shop_id: str) -> ShopCatalogue | None:
        return self._shops.get(shop_id)

    async def plan(self, customers: Sequence[Document], now: datetime,
                   recovering: Collection[str] | None = None) -> list[Planned]:
        """Plan each customer; `recovering` names the customers (by `_id`) whose step may already be
        recorded by a crashed run (None: check them all, as the dry run does)."""
        if not customers:
            return []
        await self._ensure_shops(c["shop_id"] for c in customers)
        profiles = await ReminderProfileRepository(self._db).get_many([c["_id"] for c in customers])
        planned = []
        for customer in customers:
            profile = profiles.get(customer["_id"])
            planned.append(self._plan_one(customer, view_stats(profile), bought_products(profile), now))
        check = [p.delivery_id for p in planned
                 if p.delivery_id and (recovering is None or p.customer["_id"] in recovering)]
        recorded = await DeliveryRepository(self._db).existing(check)
        for item in planned:
            if item.delivery_id:
                item.recorded = recorded.get(item.delivery_id)
        return planned

    def _plan_one(self, customer: Document, views: list[ViewStat], bought: dict[str, datetime],
                  now: datetime) -> Planned:
        shop_id = customer["shop_id"]
        cat = self._shops.get(shop_id)
        if cat is None:
            return Planned(customer, shop_id, Decision("inactive", reason="unknown_shop", state={"next_due_at": None}))
        if customer.get("customer_missing"):
            return Planned(customer, shop_id,
                           Decision("inactive", reason="unknown_customer", state={"next_due_at": None}))
        pool = cat.products
        facts = CustomerFacts(customer=customer, views=views, bought=bought)
        decision = decide(facts, cat.settings, cat.shop.timezone, pool, cat.candidates(), now)
        item = Planned(customer, shop_id, decision)
        if decision.step is None or decision.kind not in ("send", "skip"):
            return item
        item.step = cat.settings.steps[decision.step]
        cycle_id = item.cycle_id or ""
        item.delivery_id, item.key = delivery_identity(shop_id, item.line_user_id, cycle_id, decision.step)
        if decision.kind == "send" and decision.choice is not None:
            item.products = [pool[s.product_id] for s in decision.choice.shown]
            bubbles = [self._template(shop_id, decision.step, item.step, p)
                       .with_url(click_url(self._public_base, item.delivery_id, index))
                       for index, p in enumerate(item.products)]
            item.message = assemble_carousel(bubbles, item.step)
        return item

    def _template(self, shop_id: str, step_index: int, step: ReminderStep, product: Document) -> BubbleTemplate:
        """The product's bubble on this step, built on first use in the run (the catalogue is fixed per run)."""
        key = (shop_id, step_index, product["product_id"])
        template = self._bubbles.get(key)
        if template is None:
            card = ProductCard(
                title=str(product.get("title") or ""), url="", price=int(product.get("price") or 0),
                sale_price=product.get("sale_price"), image_url=product.get("image_url"),
                total_stock=int(product.get("total_stock") or 0) if product.get("track_inventory") else None,
            )
            template = self._bubbles[key] = bubble_template(card, step)
        return template
