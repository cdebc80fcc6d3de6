"""Tag rules (seed 003): subscription-app tags through the bulk API, `purchase-count:N` kept at order ingest,
`…-resume` clearing `…-pause` — each change a `tags_changed` signal (step sequences' `tag_added` hears it)."""

from __future__ import annotations

from typing import Any

import pytest

from flows.segments.tags import pause_tags_cleared, purchase_count_change
from tests.flows.broadcasts.conftest import World, user


@pytest.mark.parametrize(("tags", "count", "add", "remove"), [
    ([], 0, [], []),
    ([], 1, ["purchase-count:1"], []),
    (["purchase-count:1", "vip"], 2, ["purchase-count:2"], ["purchase-count:1"]),
    (["purchase-count:2"], 2, [], []),
    (["purchase-count:2", "purchase-count:3"], 0, [], ["purchase-count:2", "purchase-count:3"]),
])
def test_purchase_count_change(tags: list[str], count: int, add: list[str], remove: list[str]) -> None:
    assert purchase_count_change(tags, count, "purchase-count:") == (add, remove)


@pytest.mark.parametrize(("tags", "added", "cleared"), [
    (["subscription-1-pause", "vip"], ["subscription-1-resume"], ["subscription-1-pause"]),
    (["subscription-1-pause:2037-12-01"], ["subscription-1-resume:2037-12-09"], ["subscription-1-pause:2037-12-01"]),
    (["subscription-2-pause"], ["subscription-1-resume"], []),
    (["subscription-1-pauses"], ["subscription-1-resume"], []),
    (["subscription-1-pause"], ["vip"], []),
])
def test_pause_tags_cleared(tags: list[str], added: list[str], cleared: list[str]) -> None:
    assert pause_tags_cleared(tags, added) == cleared


def listen(world: World) -> list[tuple[Any, ...]]:
    heard: list[tuple[Any, ...]] = []

    async def record(database: Any, *args: Any) -> None:
        heard.append(args[:4])

    world.db.signals.tags_changed.connect(record)
    return heard


async def tags_of(world: World, line_user_id: str) -> list[str]:
    return sorted((await world.call("GET", f"/customers/{line_user_id}", 200))["tags"])


async def order(world: World, line_user_id: str, order_id: str, status: str = "paid") -> None:
    await world.call("POST", "/orders", None, json={
        "order_id": order_id, "line_user_id": line_user_id, "status": status, "total": 3000,
        "items": [{"product_id": "p1", "quantity": 1, "price": 3000}], "ordered_at": "2037-11-30T10:00:00+09:00"})


async def test_a_purchase_count_tag_is_kept_current_at_order_ingest(world: World) -> None:
    u1, u2 = user(1), user(2)
    await order(world, u2, "o0")
    assert await tags_of(world, u2) == []  # the rule is off by default
    await world.call("PUT", "/settings/tags", 200, json={"purchase_count_tag": True})
    heard = listen(world)
    await order(world, u1, "o1")
    assert await tags_of(world, u1) == ["purchase-count:1"]
    await order(world, u1, "o2")
    await order(world, u1, "o2")  # a replay changes nothing
    assert await tags_of(world, u1) == ["purchase-count:2"]
    await order(world, u1, "o2", status="refunded")
    assert await tags_of(world, u1) == ["purchase-count:1"]
    shop = world.shop.shop_id
    assert heard == [(shop, [u1], ["purchase-count:1"], []),
                     (shop, [u1], ["purchase-count:2"], ["purchase-count:1"]),
                     (shop, [u1], ["purchase-count:1"], ["purchase-count:2"])]


async def test_a_resume_tag_clears_the_pause_tag_when_switched_on(world: World) -> None:
    u1, u2 = user(1), user(2)
    tags = {"line_user_ids": [u1, u2], "add": ["subscription-123-plan:定期便A", "subscription-123-pause"]}
    await world.call("POST", "/customers/tags", 200, json=tags)
    await world.call("POST", "/customers/tags", 200, json={"line_user_ids": [u2], "add": ["subscription-123-resume"]})
    assert "subscription-123-pause" in await tags_of(world, u2)  # off by default
    await world.call("PUT", "/settings/tags", 200, json={"resume_clears_pause": True})
    heard = listen(world)
    await world.call("POST", "/customers/tags", 200,
                     json={"line_user_ids": [u1], "add": ["subscription-123-resume:2037-12-01"]})
    assert await tags_of(world, u1) == ["subscription-123-plan:定期便A", "subscription-123-resume:2037-12-01"]
    assert "subscription-123-pause" in await tags_of(world, u2)
    shop = world.shop.shop_id
    # The rule's removal is a signal of its own (heard first here: it runs inside the merchant's signal).
    assert sorted(heard) == [(shop, [u1], [], ["subscription-123-pause"]),
                             (shop, [u1], ["subscription-123-resume:2037-12-01"], [])]


async def test_subscription_app_tags_drive_segments_by_prefix(world: World) -> None:
    users = [user(i) for i in range(4)]
    await world.call("POST", "/customers/tags", 200, json={"line_user_ids": users[:3],
                                                           "add": ["subscription-123-plan:定期便A"]})
    await world.call("POST", "/customers/tags", 200, json={"line_user_ids": users[1:2],
                                                           "add": ["subscription-123-skip-count:2"]})
    await world.call("POST", "/customers/tags", 200, json={"line_user_ids": users[2:3],
                                                           "add": ["subscription-123-cancel:2037-12-01"]})
    await world.db["customers"].update_many({}, {"$set": {"friend": True}})  # they follow the account
    await world.segment("skippers", {"tags_all": ["subscription-123-skip-count:*"]})
    await world.segment("active", {"tags_any": ["subscription-123-plan:*"], "tags_none": ["subscription-123-cancel:*"]})
    assert (await world.preview("skippers"))["sample"] == [users[1]]
    assert sorted((await world.preview("active"))["sample"]) == users[:2]
