"""Turn a batch of customers into planned actions: load their data in a few `$in` queries, decide, build.

Shared by the worker and the admin dry run, so a preview is exactly what would
be sent. Loads per batch, never per customer: views, paid orders, viewed
products and existing deliveries are one query each; shops, settings and
similar-product lists are cached for one run. No sends, no claims, no writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from linebot.v3.messaging import Message
from pymongo.asynchronous.cursor import AsyncCursor

from bot.flex.reminder import ProductCard, build_reminder_carousel
from bot.line_client import retry_key_for
from scheduler.reminders.choice import Candidates, ViewStat, merge_views, similar_keys
from scheduler.reminders.decide import CustomerFacts, Decision, decide
from storage.database import INDEXES, Database, Document
from storage.deliveries import DeliveryRepository
from storage.shop_settings import ReminderSettings, ReminderStep, ShopSettingsRepository
from storage.shops import Shop

CAMPAIGN = "reminders"
CANDIDATES_PER_LIST = 20


def index_for(collection: str, *fields: str) -> list[tuple[str, int]] | None:
    """The keys of a declared index starting with `fields` (owned by storage.browsers/orders/products).

    SecantusDB's planner scans the collection when a filter has more fields than
    an index, so our batch queries name the index they rely on; looked up, not
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


@dataclass
class ShopCatalogue:
    """One shop's settings and similar-product lists, cached for one run."""

    shop: Shop
    settings: ReminderSettings
    by_category: dict[str, list[Document]] = field(default_factory=dict)
    by_tag: dict[str, list[Document]] = field(default_factory=dict)
    best_sellers: list[Document] | None = None

    def candidates(self) -> Candidates:
        return Candidates(self.by_category, self.by_tag, self.best_sellers or [])


@dataclass
class Planned:
    """What to do for one customer; `message` is set only for a send."""

    customer: Document
    shop_id: str
    decision: Decision
    step: ReminderStep | None = None
    delivery_id: str | None = None
    key: str | None = None
    message: Message | None = None  # the SDK model pushed as is (the dry run shows its JSON)
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

    async def _ensure_shops(self, shop_ids: Iterable[str]) -> None:
        missing = sorted({s for s in shop_ids if s not in self._shops})
        if not missing:
            return
        docs = {doc["_id"]: doc async for doc in self._db.shops.find({"_id": {"$in": missing}})}
        settings = await ShopSettingsRepository(self._db).get_many(missing, ReminderSettings)
        for shop_id in missing:
            doc = docs.get(shop_id)
            self._shops[shop_id] = ShopCatalogue(Shop.from_doc(doc), settings[shop_id]) if doc else None

    def catalogue(self, shop_id: str) -> ShopCatalogue | None:
        return self._shops.get(shop_id)

    async def _similar(self, cat: ShopCatalogue, categories: set[str], tags: set[str]) -> None:
        products = self._db["products"]
        base = {"shop_id": cat.shop.shop_id, "available": True}
        for name, cache, field_name in ((categories, cat.by_category, "category"), (tags, cat.by_tag, "tags")):
            for value in sorted(name - cache.keys()):
                cursor = hinted(products.find({**base, field_name: value}, PRODUCT_FIELDS),
                                index_for("products", "shop_id", field_name)).sort("sold_count", -1)
                cache[value] = [doc async for doc in cursor.limit(CANDIDATES_PER_LIST)]
        if cat.best_sellers is None:
            cursor = hinted(products.find(base, PRODUCT_FIELDS),
                            index_for("products", "shop_id", "available", "sold_count")).sort("sold_count", -1)
            cursor = cursor.limit(CANDIDATES_PER_LIST)
            cat.best_sellers = [doc async for doc in cursor]

    async def plan(self, customers: Sequence[Document], now: datetime) -> list[Planned]:
        if not customers:
            return []
        await self._ensure_shops(c["shop_id"] for c in customers)
        shop_ids = sorted({c["shop_id"] for c in customers})
        users = sorted({c["line_user_id"] for c in customers})
        pairs = {(c["shop_id"], c["line_user_id"]) for c in customers}

        views: dict[tuple[str, str], list[Document]] = defaultdict(list)
        cursor = hinted(self._db["product_views"].find(
            {"shop_id": {"$in": shop_ids}, "line_user_id": {"$in": users}},
            {"shop_id": 1, "line_user_id": 1, "product_id": 1, "count": 1, "first_viewed_at": 1,
             "last_viewed_at": 1},
        ), index_for("product_views", "shop_id", "line_user_id"))
        async for row in cursor:
            if (row["shop_id"], row["line_user_id"]) in pairs:
                views[(row["shop_id"], row["line_user_id"])].append(row)

        days = max((max(c.settings.bought_product_exclusion_days, c.settings.recent_purchase_days)
                    for c in (self._shops[s] for s in shop_ids) if c), default=0)
        orders: dict[tuple[str, str], list[Document]] = defaultdict(list)
        cursor = hinted(self._db["orders"].find(
            {"shop_id": {"$in": shop_ids}, "line_user_id": {"$in": users}, "status": "paid",
             "ordered_at": {"$gte": now - timedelta(days=days)}},
            {"shop_id": 1, "line_user_id": 1, "ordered_at": 1, "items.product_id": 1, "total": 1},
        ), index_for("orders", "shop_id", "line_user_id"))
        async for order in cursor:
            orders[(order["shop_id"], order["line_user_id"])].append(order)

        merged = {pair: merge_views(rows) for pair, rows in views.items()}
        wanted = sorted({f"{shop}:{v.product_id}" for (shop, _), stats in merged.items() for v in stats})
        products: dict[str, dict[str, Document]] = defaultdict(dict)
        if wanted:
            async for doc in self._db["products"].find({"_id": {"$in": wanted}}, PRODUCT_FIELDS):
                products[doc["shop_id"]][doc["product_id"]] = doc

        for shop_id in shop_ids:
            cat = self._shops[shop_id]
            if cat is None:
                continue
            stats = [v for (shop, _), vs in merged.items() if shop == shop_id for v in vs]
            categories, tags = similar_keys(stats, products[shop_id])
            await self._similar(cat, categories, tags)

        planned = [self._plan_one(c, merged.get((c["shop_id"], c["line_user_id"]), []),
                                  orders.get((c["shop_id"], c["line_user_id"]), []), products[c["shop_id"]], now)
                   for c in customers]
        recorded = await DeliveryRepository(self._db).existing([p.delivery_id for p in planned if p.delivery_id])
        for item in planned:
            if item.delivery_id:
                item.recorded = recorded.get(item.delivery_id)
        return planned

    def _plan_one(self, customer: Document, views: list[ViewStat], orders: list[Document],
                  viewed: dict[str, Document], now: datetime) -> Planned:
        shop_id = customer["shop_id"]
        cat = self._shops.get(shop_id)
        if cat is None:
            return Planned(customer, shop_id, Decision("inactive", reason="unknown_shop", state={"next_due_at": None}))
        candidates = cat.candidates()
        pool: dict[str, Document] = {}
        for lists in (candidates.best_sellers, *candidates.by_category.values(), *candidates.by_tag.values()):
            for doc in lists:
                pool[doc["product_id"]] = doc
        pool.update(viewed)
        facts = CustomerFacts(customer=customer, views=views, paid_orders=orders)
        decision = decide(facts, cat.settings, cat.shop.timezone, pool, candidates, now)
        item = Planned(customer, shop_id, decision)
        if decision.step is None or decision.kind not in ("send", "skip"):
            return item
        item.step = cat.settings.steps[decision.step]
        cycle_id = item.cycle_id or ""
        item.delivery_id, item.key = delivery_identity(shop_id, item.line_user_id, cycle_id, decision.step)
        if decision.kind == "send" and decision.choice is not None:
            item.products = [pool[s.product_id] for s in decision.choice.shown]
            cards = [
                ProductCard(
                    title=str(p.get("title") or ""), url=click_url(self._public_base, item.delivery_id, index),
                    price=int(p.get("price") or 0), sale_price=p.get("sale_price"), image_url=p.get("image_url"),
                    total_stock=int(p.get("total_stock") or 0) if p.get("track_inventory") else None,
                )
                for index, p in enumerate(item.products)
            ]
            item.message = Message.from_dict(build_reminder_carousel(cards, item.step))
        return item
