"""The shop's catalogue: products with variants, summed stock and sales counts.

Document (`products`, `_id` = "<shop_id>:<product_id>"):
  shop_id, product_id, title, url, image_url, image_urls[], price (int yen),
  sale_price (int | None), category (str | None), tags[], published,
  track_inventory, continue_selling, variants[{id, title, price, stock}],
  total_stock (sum of variant stock), available (see `is_available`, kept at
  write time so the reminder engine can filter on an index), sold_count (paid
  quantity, kept by storage.orders), created_at, updated_at.

The admin API is the only writer of catalogue fields; `sold_count` is only ever
changed by `$inc` from order ingest, so a product upsert never resets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.cursor import AsyncCursor

from storage.database import Database, Document, IndexSpec
from storage.keys import shop_scoped

INDEXES: list[IndexSpec] = (
    [
        IndexSpec("products", [("shop_id", ASCENDING), ("product_id", ASCENDING)], "shop_product", unique=True),
        IndexSpec("products", [("shop_id", ASCENDING), ("category", ASCENDING), ("product_id", ASCENDING)], "shop_category"),
        IndexSpec("products", [("shop_id", ASCENDING), ("tags", ASCENDING), ("product_id", ASCENDING)], "shop_tags"),
        IndexSpec("products", [("shop_id", ASCENDING), ("available", ASCENDING), ("product_id", ASCENDING)], "shop_available"),
        IndexSpec("products", [("shop_id", ASCENDING), ("published", ASCENDING), ("product_id", ASCENDING)], "shop_published"),
        IndexSpec("products", [("shop_id", ASCENDING), ("available", ASCENDING), ("sold_count", -1)], "shop_best_sellers"),
    ]
)

CATALOGUE_FIELDS = (
    "title", "url", "image_url", "image_urls", "price", "sale_price", "category", "tags",
    "published", "track_inventory", "continue_selling", "variants",
)


def product_key(shop_id: str, product_id: str) -> str:
    return shop_scoped(shop_id, product_id)


def total_stock(variants: Iterable[Mapping[str, Any]]) -> int:
    return sum(int(variant.get("stock") or 0) for variant in variants)


def is_available(product: Mapping[str, Any]) -> bool:
    """May this product be shown to a customer? Unpublished or sold out (when it matters) is not."""
    if not product.get("published", False):
        return False
    if product.get("track_inventory") and not product.get("continue_selling"):
        return int(product.get("total_stock", 0)) > 0
    return True


def catalogue_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a write stores: the merchant's fields plus the derived total stock and availability."""
    stored = {key: fields[key] for key in CATALOGUE_FIELDS if key in fields}
    stored["total_stock"] = total_stock(stored.get("variants", []))
    stored["available"] = is_available(stored)
    return stored


def _upsert(shop_id: str, product_id: str, fields: Mapping[str, Any], now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter and update of an idempotent product write (replays give the same document)."""
    return (
        {"_id": product_key(shop_id, product_id)},
        {
            "$set": {**catalogue_fields(fields), "updated_at": now},
            "$setOnInsert": {"shop_id": shop_id, "product_id": product_id, "sold_count": 0, "created_at": now},
        },
    )


@dataclass(frozen=True)
class BulkResult:
    created: int
    updated: int


class ProductRepository:
    def __init__(self, database: Database) -> None:
        self._products = database["products"]

    async def upsert(self, shop_id: str, product_id: str, fields: Mapping[str, Any], now: datetime) -> bool:
        """Create or replace the catalogue fields of one product; True when it was created."""
        result = await self._products.update_one(*_upsert(shop_id, product_id, fields, now), upsert=True)
        return result.upserted_id is not None

    async def bulk_upsert(self, shop_id: str, items: list[tuple[str, Mapping[str, Any]]], now: datetime) -> BulkResult:
        """Hundreds of products in one round trip (one unordered bulk write)."""
        if not items:
            return BulkResult(0, 0)
        result = await self._products.bulk_write(
            [UpdateOne(*_upsert(shop_id, pid, fields, now), upsert=True) for pid, fields in items], ordered=False
        )
        return BulkResult(created=result.upserted_count, updated=result.matched_count)

    async def get(self, shop_id: str, product_id: str) -> Document | None:
        return await self._products.find_one({"_id": product_key(shop_id, product_id)})

    def catalogue(self, shop_id: str, projection: Mapping[str, Any]) -> AsyncCursor[Document]:
        """The shop's whole catalogue through a shop_id index (a flow's per-run read).

        Never hinted: the embedded database answers a hinted query by walking the whole index (every shop).
        """
        return self._products.find({"shop_id": shop_id}, projection)

    async def get_many(self, shop_id: str, product_ids: Iterable[str]) -> dict[str, Document]:
        keys = [product_key(shop_id, pid) for pid in set(product_ids)]
        return {doc["product_id"]: doc async for doc in self._products.find({"_id": {"$in": keys}})}

    async def delete(self, shop_id: str, product_id: str) -> bool:
        result = await self._products.delete_one({"_id": product_key(shop_id, product_id)})
        return result.deleted_count == 1

    async def list(
        self,
        shop_id: str,
        *,
        after: str | None = None,
        limit: int = 50,
        category: str | None = None,
        tag: str | None = None,
        published: bool | None = None,
        available: bool | None = None,
    ) -> list[Document]:
        """One page in product ID order (keyset paging on an index chosen by the filter)."""
        query: dict[str, Any] = {"shop_id": shop_id}
        if category is not None:
            query["category"] = category
        if tag is not None:
            query["tags"] = tag
        if published is not None:
            query["published"] = published
        if available is not None:
            query["available"] = available
        if after is not None:
            query["product_id"] = {"$gt": after}
        cursor = self._products.find(query).sort("product_id", ASCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def add_sold(self, shop_id: str, quantities: Mapping[str, int], *, session: Any = None) -> None:
        """Move `sold_count` by the paid quantity change of an order (negative on refund)."""
        ops = [
            UpdateOne({"_id": product_key(shop_id, pid)}, {"$inc": {"sold_count": qty}})
            for pid, qty in quantities.items()
            if qty
        ]
        if ops:
            await self._products.bulk_write(ops, ordered=False, session=session)
