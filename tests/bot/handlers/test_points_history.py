"""Points and purchase history in LINE, with the data posted through the real admin API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from bot.postback import build
from linesim.client import SimClient
from linesim.validation import validate_request
from tests.bot.conftest import USER
from tests.conftest import ShopHandle
from tests.flex_helpers import flex_texts as _texts

Play = Callable[..., Awaitable[dict[str, Any]]]
PREFIX = "/admin/api/v1/shops/"


async def _admin(client: TestClient[Any, Any], shop: ShopHandle, method: str, path: str, body: Any) -> Any:
    response = await client.request(method, PREFIX + shop.shop_id + path, json=body, headers=shop.auth)
    assert response.status < 300, await response.text()
    return await response.json()


async def _last_reply(sim: SimClient) -> dict[str, Any]:
    sent = await sim.messages(to=USER)
    assert sent, "nothing was sent"
    message: dict[str, Any]
    (message,) = sent[-1]["messages"]
    assert validate_request("PushMessageRequest", {"to": USER, "messages": [message]}) == []
    return message


async def test_points_tap_shows_balance_expiry_and_rank(
    client: TestClient[Any, Any], play: Play, sim: SimClient, shop: ShopHandle
) -> None:
    await play({"type": "follow", "user_id": USER})
    await _admin(client, shop, "PUT", "/settings/messaging", {"shop_url": "https://shop.example.jp/"})
    await _admin(client, shop, "POST", "/points/transactions", {
        "transaction_id": "t1", "line_user_id": USER, "type": "earn", "amount": 1200,
        "expires_at": "2038-03-31T23:59:00+09:00"})
    await _admin(client, shop, "POST", "/points/transactions", {
        "transaction_id": "t2", "line_user_id": USER, "type": "earn", "amount": 300,
        "expires_at": "2038-01-15T23:59:00+09:00"})
    await _admin(client, shop, "PATCH", f"/customers/{USER}", {"rank": "ゴールド"})

    await play({"type": "postback", "user_id": USER, "data": build("points")})
    message = await _last_reply(sim)
    assert message["type"] == "flex" and message["altText"] == "現在のポイント: 1,500pt"
    texts = _texts(message["contents"])
    assert "1,500pt" in texts and "300pt" in texts and "2038年1月15日(金)" in texts and "ゴールド" in texts
    assert message["contents"]["footer"]["contents"][0]["action"]["uri"] == "https://shop.example.jp/"


async def test_points_keyword_without_points_is_a_friendly_text(play: Play, sim: SimClient) -> None:
    await play({"type": "text", "user_id": USER, "text": "ポイント"})
    message = await _last_reply(sim)
    assert message["type"] == "text" and "まだありません" in message["text"]


async def test_history_shows_recent_orders_newest_first(
    client: TestClient[Any, Any], play: Play, sim: SimClient, shop: ShopHandle
) -> None:
    await _admin(client, shop, "PUT", "/products/p1", {
        "title": "オーガニックコットンTシャツ", "url": "https://shop.example.jp/p1", "image_url": "https://shop.example.jp/p1.jpg",
        "price": 3980, "published": True, "track_inventory": False, "continue_selling": True,
        "variants": [{"id": "v1", "stock": 5}]})
    orders = [
        ("o-old", "2037-07-01T10:00:00+09:00", "paid"),  # older than 3 months: not shown
        ("o-1", "2037-10-02T10:00:00+09:00", "paid"),
        ("o-2", "2037-11-20T18:30:00+09:00", "refunded"),
    ]
    for order_id, at, status in orders:
        await _admin(client, shop, "POST", "/orders", {
            "order_id": order_id, "line_user_id": USER, "ordered_at": at, "status": status, "total": 8460,
            "items": [{"product_id": "p1", "quantity": 2, "price": 3980}, {"product_id": "gone", "quantity": 1, "price": 500}]})

    await play({"type": "text", "user_id": USER, "text": "購入履歴"})
    message = await _last_reply(sim)
    bubbles = message["contents"]["contents"]
    assert message["contents"]["type"] == "carousel" and len(bubbles) == 2
    newest = _texts(bubbles[0])
    assert "2037年11月20日(金)" in newest and "返金済み" in newest and "¥8,460" in newest and "3点" in newest
    assert "・オーガニックコットンTシャツ ×2" in newest and "・gone ×1" in newest
    assert "2037年10月2日(金)" in _texts(bubbles[1])


async def test_history_without_orders_is_a_short_text(play: Play, sim: SimClient) -> None:
    await play({"type": "postback", "user_id": USER, "data": build("history")})
    message = await _last_reply(sim)
    assert message == {"type": "text", "text": "直近3か月のご購入履歴はありません。"}
