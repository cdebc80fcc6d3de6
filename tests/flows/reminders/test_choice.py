"""Product choice: most viewed first, fill with similar, exclusions with reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flows.reminders.choice import Candidates, ViewStat, choose_products

T0 = datetime(2037, 12, 1, tzinfo=UTC)


def product(pid: str, **fields: Any) -> dict[str, Any]:
    base = {"product_id": pid, "published": True, "track_inventory": True, "continue_selling": False,
            "total_stock": 10, "category": None, "tags": []}
    return {**base, **fields}


def view(pid: str, count: int, minutes: int = 0) -> ViewStat:
    return ViewStat(pid, count, T0 + timedelta(minutes=minutes))


def test_most_viewed_first_ties_by_most_recent() -> None:
    products = {p: product(p) for p in "abcdefg"}
    views = [view("a", 1), view("b", 5), view("c", 2, 1), view("d", 2, 5), view("e", 1, 9), view("f", 1, 3)]
    choice = choose_products(views, products, set(), Candidates())
    assert [s.product_id for s in choice.shown] == ["b", "d", "c", "e", "f"]
    assert choice.shown[0].reason == "viewed 5×"
    assert choice.excluded == []


def test_exclusions_carry_reasons() -> None:
    products = {
        "sold_out": product("sold_out", total_stock=0),
        "backorder": product("backorder", total_stock=0, continue_selling=True),
        "untracked": product("untracked", total_stock=0, track_inventory=False),
        "hidden": product("hidden", published=False),
        "bought": product("bought"),
    }
    views = [view(p, 9 - i) for i, p in enumerate([*products, "gone"])]
    choice = choose_products(views, products, {"bought"}, Candidates())
    assert [s.product_id for s in choice.shown] == ["backorder", "untracked"]
    assert {e.product_id: e.reason for e in choice.excluded} == {
        "sold_out": "out_of_stock", "hidden": "unpublished", "bought": "bought_recently", "gone": "not_in_catalogue",
    }


def test_fill_with_category_then_tags_then_best_sellers() -> None:
    viewed = product("v", category="shoes", tags=["summer"])
    same_cat = [product("c1", category="shoes"), product("c2", category="shoes", published=False)]
    same_tag = [product("t1", tags=["summer"]), product("c1", category="shoes")]
    best = [product("v", category="shoes"), product("b1"), product("b2"), product("b3")]
    products = {"v": viewed}
    choice = choose_products([view("v", 3)], products, set(),
                             Candidates({"shoes": same_cat}, {"summer": same_tag}, best))
    assert [(s.product_id, s.reason) for s in choice.shown] == [
        ("v", "viewed 3×"), ("c1", "similar: same category"), ("t1", "similar: same tags"),
        ("b1", "shop best-seller"), ("b2", "shop best-seller"),
    ]


def test_nothing_left() -> None:
    choice = choose_products([view("x", 1)], {"x": product("x", published=False)}, set(), Candidates())
    assert choice.shown == [] and choice.excluded[0].reason == "unpublished"
