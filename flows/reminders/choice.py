"""Which products a reminder shows, decided at send time: a pure function over plain data.

Most-viewed first, then more by view count (ties: most recent view), filled up
with similar products (same category, then same tags, then the shop's
best-sellers). Every shown product carries the reason it was shown and every
viewed product left out carries the reason it was excluded, so the dry run can
explain the choice. Never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Product = Mapping[str, Any]  # a `products` document (see storage/products.py)


@dataclass(frozen=True)
class ViewStat:
    """A customer's views of one product, summed over all their browsers."""

    product_id: str
    count: int
    last_viewed_at: datetime


@dataclass(frozen=True)
class Shown:
    product_id: str
    reason: str


@dataclass(frozen=True)
class Excluded:
    product_id: str
    reason: str


@dataclass(frozen=True)
class Candidates:
    """The shop's similar-product lists, each already ordered best-selling first."""

    by_category: Mapping[str, Sequence[Product]] = field(default_factory=dict)
    by_tag: Mapping[str, Sequence[Product]] = field(default_factory=dict)
    best_sellers: Sequence[Product] = ()


@dataclass(frozen=True)
class Choice:
    shown: list[Shown]
    excluded: list[Excluded]


def exclusion_reason(product: Product | None, bought: set[str]) -> str | None:
    """Why a product may not be shown, or None when it may."""
    if product is None:
        return "not_in_catalogue"
    if not product.get("published", False):
        return "unpublished"
    if (
        product.get("track_inventory")
        and not product.get("continue_selling")
        and int(product.get("total_stock") or 0) <= 0
    ):
        return "out_of_stock"
    if product["product_id"] in bought:
        return "bought_recently"
    return None


def _view_order(views: Sequence[ViewStat]) -> list[ViewStat]:
    return sorted(views, key=lambda v: (-v.count, -v.last_viewed_at.timestamp(), v.product_id))


def choose_products(
    views: Sequence[ViewStat],
    products: Mapping[str, Product],
    bought: set[str],
    candidates: Candidates,
    limit: int = 5,
) -> Choice:
    """The products to show, in order, with reasons; viewed products left out, with reasons."""
    shown: list[Shown] = []
    excluded: list[Excluded] = []
    taken: set[str] = set()
    ordered = _view_order(views)
    for view in ordered:
        reason = exclusion_reason(products.get(view.product_id), bought)
        if reason is not None:
            excluded.append(Excluded(view.product_id, reason))
        elif len(shown) < limit:
            shown.append(Shown(view.product_id, f"viewed {view.count}×"))
            taken.add(view.product_id)
    viewed_ids = {view.product_id for view in ordered}

    def fill(pool: Iterable[Product], reason: str) -> None:
        for product in pool:
            if len(shown) >= limit:
                return
            pid = product["product_id"]
            if pid in taken or pid in viewed_ids or exclusion_reason(product, bought) is not None:
                continue
            shown.append(Shown(pid, reason))
            taken.add(pid)

    viewed_products = [products[v.product_id] for v in ordered if v.product_id in products]
    for category in _unique(p.get("category") for p in viewed_products):
        fill(candidates.by_category.get(category, ()), "similar: same category")
    for tag in _unique(t for p in viewed_products for t in p.get("tags") or ()):
        fill(candidates.by_tag.get(tag, ()), "similar: same tags")
    fill(candidates.best_sellers, "shop best-seller")
    return Choice(shown, excluded)


def _unique(values: Iterable[Any]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


def candidate_lists(products: Iterable[Product], per_list: int = 20) -> Candidates:
    """A shop's similar-product lists from its catalogue: available products, best-selling first.

    Built once per run from the whole catalogue (one indexed scan) instead of one
    query per category and tag; ties on sales go by product ID so every run agrees.
    """
    available = sorted((p for p in products if p.get("available")),
                       key=lambda p: (-int(p.get("sold_count") or 0), str(p["product_id"])))
    by_category: dict[str, list[Product]] = {}
    by_tag: dict[str, list[Product]] = {}
    for product in available:
        category = product.get("category")
        if category and len(by_category.setdefault(category, [])) < per_list:
            by_category[category].append(product)
        for tag in _unique(product.get("tags") or ()):
            if len(by_tag.setdefault(tag, [])) < per_list:
                by_tag[tag].append(product)
    return Candidates(by_category, by_tag, available[:per_list])
