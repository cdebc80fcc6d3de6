"""Segments: CRUD and validation, preview counts equal to a plain reading of the filter over every customer,
reachable friends only, and every audience query planned on an index (explain)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from storage.segments import SegmentFilter, audience_query
from tests.conftest import START
from tests.flows.broadcasts.conftest import World, user

PLANS = ["subscription-1-plan:定期便A", "subscription-1-plan:定期便B", "subscription-2-plan:お試し"]


def seeded(world: World, n: int = 400) -> list[dict[str, Any]]:
    rng = random.Random(12)
    docs = []
    for i in range(n):
        tags = rng.sample(PLANS, rng.randrange(0, 3)) + rng.sample(["vip", "newsletter", "subscription-1-pause"],
                                                                    rng.randrange(0, 2))
        docs.append(world.customer_doc(
            user(i), tags=tags, spend=rng.randrange(0, 50_000), purchases=rng.randrange(0, 8),
            rank=rng.choice([None, "gold", "silver"]), linked=rng.random() < 0.6, friend=rng.random() < 0.9,
            blocked=rng.random() < 0.08, opted_out=rng.random() < 0.05,
            points=rng.choice([None, 0, 150, 3000]),
            last_purchase_at=rng.choice([None, START - timedelta(days=rng.randrange(1, 200))])))
    return docs


def tag_matches(pattern: str, tags: list[str]) -> bool:
    if pattern.endswith("*"):
        return any(t.startswith(pattern[:-1]) for t in tags)
    return pattern in tags


def within(value: int, bounds: dict[str, int] | None) -> bool:
    return bounds is None or (bounds.get("min", value) <= value <= bounds.get("max", value))


def expected(docs: list[dict[str, Any]], spec: dict[str, Any], now: datetime) -> set[str]:
    """The filter read plainly, customer by customer (the spec the indexed queries must agree with)."""
    out = set()
    for d in docs:
        tags, totals = d["tags"], d["totals"]
        ok = d["friend"] and not d["blocked"] and not d["opted_out"]
        ok = ok and all(tag_matches(p, tags) for p in spec.get("tags_all", []))
        ok = ok and (not spec.get("tags_any") or any(tag_matches(p, tags) for p in spec["tags_any"]))
        ok = ok and not any(tag_matches(p, tags) for p in spec.get("tags_none", []))
        ok = ok and (not spec.get("ranks") or d.get("rank") in spec["ranks"])
        ok = ok and within(totals["purchase_count"], spec.get("purchase_count"))
        ok = ok and within(totals["total_spend"], spec.get("total_spent"))
        ok = ok and within((d.get("points") or {}).get("balance", 0), spec.get("points_balance"))
        if "last_purchase_within_days" in spec:
            last = totals["last_purchase_at"]
            ok = ok and last is not None and last >= now - timedelta(days=spec["last_purchase_within_days"])
        if "linked" in spec:
            ok = ok and d["linked"] == spec["linked"]
        if ok:
            out.add(d["line_user_id"])
    return out


FILTERS: list[dict[str, Any]] = [
    {},
    {"tags_all": ["vip"]},
    {"tags_all": ["subscription-1-plan:*"]},
    {"tags_all": ["subscription-1-*", "vip"], "tags_none": ["subscription-1-pause"]},
    {"tags_any": ["subscription-1-plan:定期便A", "subscription-2-plan:お試し"], "total_spent": {"min": 10_000}},
    {"tags_any": ["subscription-2-*"]},
    {"tags_any": ["vip", "subscription-2-*"], "purchase_count": {"min": 2, "max": 5}},
    {"tags_none": ["newsletter", "subscription-2-*"]},
    {"ranks": ["gold"], "points_balance": {"min": 100}},
    {"ranks": ["gold", "silver"], "points_balance": {"max": 150}},
    {"linked": True, "last_purchase_within_days": 30},
    {"linked": False},
    {"total_spent": {"min": 40_000}},
]


async def test_preview_counts_agree_with_the_filter_read_plainly(world: World) -> None:
    docs = seeded(world)
    await world.customers(docs)
    for i, spec in enumerate(FILTERS):
        await world.segment(f"s{i}", spec)
        found = await world.preview(f"s{i}")
        want = expected(docs, spec, START)
        assert found["count"] == len(want), spec
        assert set(found["sample"]) <= want and len(found["sample"]) == min(10, len(want)), spec
        unsaved = await world.call("POST", "/segments/preview", 200, json=spec)
        assert unsaved["count"] == len(want)


async def test_every_audience_query_rides_an_index(world: World) -> None:
    await world.customers(seeded(world, 50))
    for spec in FILTERS:
        query = audience_query(world.shop.shop_id, SegmentFilter.model_validate(spec), START)
        plan = json.dumps(await world.db["customers"].find(query.driver).explain(), default=str)
        assert "COLLSCAN" not in plan and query.index in plan, (spec, plan)
        aggregate = await world.db.db.command("explain", {"aggregate": "customers", "pipeline": query.pipeline(),
                                                          "cursor": {}})
        assert "COLLSCAN" not in json.dumps(aggregate, default=str), spec


async def test_segments_are_created_read_listed_replaced_and_deleted(world: World) -> None:
    created = await world.call("PUT", "/segments/vip", 201, json={"name": "VIP", "filter": {"tags_all": ["vip"]}})
    assert created["segment_id"] == "vip" and created["filter"]["tags_all"] == ["vip"]
    replaced = await world.call("PUT", "/segments/vip", 200, json={"name": "VIP2", "filter": {"ranks": ["gold"]}})
    assert replaced["name"] == "VIP2" and replaced["filter"]["tags_all"] == []
    await world.call("PUT", "/segments/all", 201, json={"name": "全員"})
    listed = await world.call("GET", "/segments", 200)
    assert [s["segment_id"] for s in listed["items"]] == ["all", "vip"]
    assert (await world.call("GET", "/segments/vip", 200))["name"] == "VIP2"
    await world.call("DELETE", "/segments/vip", 204)
    await world.call("GET", "/segments/vip", 404)
    await world.call("GET", "/segments/vip/preview", 404)
    await world.call("DELETE", "/segments/vip", 404)
    assert (await world.call("PUT", "/segments/vip", 201, json={"name": "again"}))["name"] == "again"


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "filter": {"tags_all": ["a*b"]}}, "filter.tags_all[0]"),
    ({"name": "x", "filter": {"tags_any": ["*"]}}, "filter.tags_any[0]"),
    ({"name": "x", "filter": {"total_spent": {"min": 10, "max": 5}}}, "filter.total_spent"),
    ({"name": "x", "filter": {"purchase_count": {}}}, "filter.purchase_count"),
    ({"name": "x", "filter": {"points_balance": {"min": -1}}}, "filter.points_balance.min"),
    ({"name": "x", "filter": {"last_purchase_within_days": 0}}, "filter.last_purchase_within_days"),
    ({"name": "x", "filter": {"linked": "yes"}}, "filter.linked"),
    ({"name": "x", "filter": {"colour": "red"}}, "filter.colour"),
    ({"filter": {}}, "name"),
    ({"name": "x", "rich_menu": {"buttons": []}}, "rich_menu.buttons"),
])
async def test_bad_segments_are_refused_with_their_field(world: World, body: dict[str, Any], field: str) -> None:
    error = await world.call("PUT", "/segments/s1", 422, json=body)
    assert error["error"]["field"] == field, error
    await world.call("GET", "/segments/s1", 404)
