"""Account link: the nonce route, start (link token via LINE) and the accountLink event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE, LINE
from linking.account_link import complete_account_link, start_account_link
from linking.links import LinkStatus
from storage.customers import CustomerRepository
from tests.conftest import START, ShopHandle
from tests.linking.conftest import browser_id, line_user_id


async def nonce(client: TestClient[Any, Any], shop: ShopHandle, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/admin/api/v1/shops/{shop.shop_id}/account-link/nonces",
                                 json={"shop_customer_id": "member-42", **body}, headers=shop.auth)
    assert response.status == 201, await response.text()
    issued: dict[str, Any] = await response.json()
    return issued


async def test_full_account_link(client: TestClient[Any, Any], shop: ShopHandle, linesim_url: str) -> None:
    db = client.app[DATABASE]
    user, bid = line_user_id(), browser_id()
    line = client.app[LINE].for_token(shop.channel_access_token)
    assert await start_account_link(db, line, shop.shop_id, user) is None  # no login page configured yet
    put = await client.put(f"/admin/api/v1/shops/{shop.shop_id}/account-link",
                           json={"login_url": "https://shop.example/line-link?x=1"}, headers=shop.auth)
    assert put.status == 200
    url = await start_account_link(db, line, shop.shop_id, user)
    assert url is not None and url.startswith("https://shop.example/line-link?x=1&linkToken=")
    link_token = parse_qs(urlsplit(url).query)["linkToken"][0]
    issued = await nonce(client, shop, browser_id=bid, link_token=link_token)
    assert 10 <= len(issued["nonce"]) <= 255
    dialog = urlsplit(issued["redirect_url"])
    assert dialog.path == "/dialog/bot/accountLink" and issued["redirect_url"].startswith(linesim_url)
    assert parse_qs(dialog.query) == {"linkToken": [link_token], "nonce": [issued["nonce"]]}
    outcome = await complete_account_link(db, shop.shop_id, user, issued["nonce"], "ok", START)
    assert outcome.ok and outcome.browser_id == bid
    customer = await CustomerRepository(db).get(shop.shop_id, user)
    assert customer is not None
    assert customer["shop_customer_id"] == "member-42" and customer["linked"] is True
    # The same event handled again (recovery after a crash) confirms the link; anyone else is refused.
    replay = await complete_account_link(db, shop.shop_id, user, issued["nonce"], "ok", START)
    assert replay.status is LinkStatus.ALREADY_LINKED
    stranger = await complete_account_link(db, shop.shop_id, line_user_id(), issued["nonce"], "ok", START)
    assert stranger.status is LinkStatus.USED


async def test_failed_expired_and_cross_shop_nonces(
    client: TestClient[Any, Any], shop: ShopHandle, make_shop: Any
) -> None:
    db = client.app[DATABASE]
    other = await make_shop()
    failed = await nonce(client, shop)
    outcome = await complete_account_link(db, shop.shop_id, None, failed["nonce"], "failed", START)
    assert outcome.status is LinkStatus.FAILED
    assert (await complete_account_link(db, shop.shop_id, line_user_id(), failed["nonce"], "ok", START)).status \
        is LinkStatus.USED
    crossed = await nonce(client, shop)
    assert (await complete_account_link(db, other.shop_id, line_user_id(), crossed["nonce"], "ok", START)).status \
        is LinkStatus.WRONG_SHOP
    late = await nonce(client, shop)
    expired = await complete_account_link(db, shop.shop_id, line_user_id(), late["nonce"], "ok",
                                          START + timedelta(minutes=11))
    assert expired.status is LinkStatus.EXPIRED
    assert await db["customers"].count_documents({"shop_customer_id": "member-42"}) == 0


async def test_nonce_route_validates(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    url = f"/admin/api/v1/shops/{shop.shop_id}/account-link/nonces"
    response = await client.post(url, json={"shop_customer_id": ""}, headers=shop.auth)
    assert response.status == 422 and (await response.json())["error"]["field"] == "shop_customer_id"
    bad_url = await client.put(f"/admin/api/v1/shops/{shop.shop_id}/account-link",
                               json={"login_url": "javascript:alert(1)"}, headers=shop.auth)
    assert bad_url.status == 422
    assert await client.app[DATABASE]["link_tokens"].count_documents({}) == 0
