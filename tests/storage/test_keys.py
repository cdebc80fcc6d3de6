"""Storage keys built from several IDs never collide, old keys stay readable, and old colliding
product-view keys are migrated."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from storage import keys
from storage.migrations import escape_view_keys, run_migrations
from tests.conftest import START, ShopHandle
from tests.linking.conftest import SHOP_ORIGIN, event, post_events


@pytest.fixture
async def shop(client: TestClient[Any, Any], make_shop: Any) -> ShopHandle:
    handle: ShopHandle = await make_shop()
    response = await client.put(f"/admin/api/v1/shops/{handle.shop_id}/settings/tracking",
                                json={"allowed_origins": [SHOP_ORIGIN]}, headers=handle.auth)
    assert response.status == 200
    return handle


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("shp_1", "U1"), "shp_1:U1"),  # two-part keys keep the format written before
        (("shp_1", "a:b"), "shp_1:a:b"),
        (("shp_1", "VV1", "p:q"), "shp_1:VV1:p:q"),
        (("shp_1", "VV1:p", "q"), "shp_1:VV1%3Ap:q"),
        (("shp_1", "50%", "q"), "shp_1:50%25:q"),
        (("shp_1", "a%3Ab", "q"), "shp_1:a%253Ab:q"),
    ],
)
def test_compose_and_split(parts: tuple[str, ...], key: str) -> None:
    assert keys.compose(*parts) == key
    assert keys.split(key, len(parts)) == parts


@pytest.mark.parametrize(
    ("one", "other"),
    [(("s", "VV1", "p:q"), ("s", "VV1:p", "q")), (("s", "a%3Ab", "c"), ("s", "a:b", "c")),
     (("s:x", "y"), ("s", "x:y"))],
)
def test_different_parts_never_share_a_key(one: tuple[str, ...], other: tuple[str, ...]) -> None:
    assert keys.compose(*one) != keys.compose(*other)


async def test_two_browsers_views_that_used_to_collide_are_two_records(
    client: TestClient[Any, Any], shop: ShopHandle
) -> None:
    assert (await post_events(client, shop.shop_id, event("VV1", product_id="p:q"))).status == 204
    assert (await post_events(client, shop.shop_id, event("VV1:p", product_id="q"))).status == 204
    views = [v async for v in client.app[DATABASE]["product_views"].find({"shop_id": shop.shop_id})]
    assert sorted((v["browser_id"], v["product_id"], v["count"]) for v in views) == [("VV1", "p:q", 1), ("VV1:p", "q", 1)]


async def test_old_view_keys_are_migrated_once_and_merge(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    db = client.app[DATABASE]
    views = db["product_views"]
    sid = shop.shop_id
    old = {"_id": f"{sid}:b:1:p", "shop_id": sid, "browser_id": "b:1", "product_id": "p", "line_user_id": None,
           "count": 2, "first_viewed_at": START, "last_viewed_at": START}
    plain = {"_id": f"{sid}:b2:p", "shop_id": sid, "browser_id": "b2", "product_id": "p", "line_user_id": None,
             "count": 1, "first_viewed_at": START, "last_viewed_at": START}
    await views.insert_many([old, plain])
    # A view written under the new key before the migration ran: the old count is added to it.
    await views.insert_one({**old, "_id": keys.view_key(sid, "b:1", "p"), "count": 3})
    assert await escape_view_keys(db) == 1
    assert await escape_view_keys(db) == 0  # idempotent
    moved = await views.find_one({"_id": keys.view_key(sid, "b:1", "p")})
    assert moved is not None and moved["count"] == 5
    assert await views.find_one({"_id": old["_id"]}) is None
    assert await views.find_one({"_id": plain["_id"]}) is not None  # unchanged key, untouched
    await run_migrations(db)
    assert await db["migrations"].find_one({"_id": "view_keys_escaped"}) is not None
