"""LINE Login linking end to end against linesim, and every way to abuse it refused."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from core.clock import FixedClock
from linking.login import ISSUER, STATE_COOKIE, IdTokenError, verify_id_token
from linking.pages import safe_return_url
from tests.conftest import START, ShopHandle
from tests.linking.conftest import (
    LOGIN_CHANNEL_ID,
    SHOP_ORIGIN,
    browser_id,
    event,
    line_user_id,
    link_token,
    post_events,
)

RETURN = SHOP_ORIGIN + "/products/p1?color=red"


async def start(client: TestClient[Any, Any], shop_id: str, bid: str, return_url: str | None = RETURN) -> str:
    token = await link_token(client, shop_id, bid)
    params = {"lt": token} if return_url is None else {"lt": token, "return": return_url}
    response = await client.get(f"/l/{shop_id}", params=params, allow_redirects=False)
    assert response.status == 302, await response.text()
    return response.headers["Location"]


async def authorize(location: str, user: str, **extra: str) -> str:
    """Play the user on linesim's consent page; returns the callback as a path for the test client."""
    async with aiohttp.ClientSession() as session:
        url = location + "&" + urlencode({"user_id": user, **extra})
        async with session.get(url, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            callback = urlsplit(response.headers["Location"])
    assert callback.netloc == "shop-bot.test"
    return urlunsplit(("", "", callback.path, callback.query, ""))


async def browser_owner(client: TestClient[Any, Any], shop_id: str, bid: str) -> str | None:
    doc = await client.app[DATABASE]["browsers"].find_one({"_id": f"{shop_id}:{bid}"})
    return doc.get("line_user_id") if doc else None


async def test_login_links_the_browser_and_shows_the_linked_page(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid, user = browser_id(), line_user_id()
    await post_events(client, shop.shop_id, event(bid, product_id="p1"))
    location = await start(client, shop.shop_id, bid)
    query = parse_qs(urlsplit(location).query)
    assert query["bot_prompt"] == ["aggressive"] and query["client_id"] == [LOGIN_CHANNEL_ID]
    assert query["redirect_uri"] == [f"http://shop-bot.test/l/{shop.shop_id}/callback"]
    assert query["scope"] == ["openid profile"] and query["nonce"] and query["state"]
    callback = await authorize(location, user)
    assert parse_qs(urlsplit(callback).query)["friendship_status_changed"] == ["true"]
    response = await client.get(callback, allow_redirects=False)
    page = await response.text()
    assert response.status == 200, page
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Referrer-Policy"] == "no-referrer"
    assert "連携が完了しました" in page and 'href="https://shop.example/products/p1?color=red"' in page
    assert await browser_owner(client, shop.shop_id, bid) == user
    view = await client.app[DATABASE]["product_views"].find_one({"_id": f"{shop.shop_id}:{bid}:p1"})
    assert view["line_user_id"] == user


async def test_replayed_callback_is_refused(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid, user = browser_id(), line_user_id()
    callback = await authorize(await start(client, shop.shop_id, bid), user)
    assert (await client.get(callback)).status == 200
    client.session.cookie_jar.update_cookies(
        {STATE_COOKIE: parse_qs(urlsplit(callback).query)["state"][0]}, response_url=client.make_url(callback)
    )
    replay = await client.get(callback)
    assert replay.status == 400 and "すでに使用されています" in await replay.text()


async def test_forged_state_is_refused(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    callback = await authorize(await start(client, shop.shop_id, bid), line_user_id())
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    query["state"] = ["forged-" + query["state"][0][7:]]
    forged = urlunsplit(("", "", parts.path, urlencode({k: v[0] for k, v in query.items()}), ""))
    response = await client.get(forged)  # the browser's cookie holds the real state
    assert response.status == 400
    client.session.cookie_jar.update_cookies({STATE_COOKIE: query["state"][0]}, response_url=client.make_url(forged))
    response = await client.get(forged)  # even when the cookie agrees, the state was never issued
    assert response.status == 400 and "無効" in await response.text()
    assert await browser_owner(client, shop.shop_id, bid) is None


async def test_state_from_another_browser_is_refused(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    callback = await authorize(await start(client, shop.shop_id, bid), line_user_id())
    client.session.cookie_jar.clear()
    response = await client.get(callback)
    assert response.status == 400 and "連携を始めたブラウザ" in await response.text()
    assert await browser_owner(client, shop.shop_id, bid) is None


async def test_expired_state_is_refused(client: TestClient[Any, Any], shop: ShopHandle, clock: FixedClock) -> None:
    bid = browser_id()
    callback = await authorize(await start(client, shop.shop_id, bid), line_user_id())
    clock.advance(timedelta(minutes=11))
    response = await client.get(callback)
    assert response.status == 400 and "有効期限" in await response.text()
    assert await browser_owner(client, shop.shop_id, bid) is None


async def test_state_of_another_shop_is_refused(
    client: TestClient[Any, Any], shop: ShopHandle, make_shop: Any
) -> None:
    other = await make_shop(line_login_channel_id=LOGIN_CHANNEL_ID, line_login_channel_secret=shop.login_secret)  # type: ignore[attr-defined]
    bid = browser_id()
    callback = await authorize(await start(client, shop.shop_id, bid), line_user_id())
    state = parse_qs(urlsplit(callback).query)["state"][0]
    crossed = callback.replace(f"/l/{shop.shop_id}/", f"/l/{other.shop_id}/")
    client.session.cookie_jar.update_cookies({STATE_COOKIE: state}, response_url=client.make_url(crossed))
    response = await client.get(crossed)
    assert response.status == 400 and "別のショップ" in await response.text()
    assert await browser_owner(client, shop.shop_id, bid) is None
    assert await browser_owner(client, other.shop_id, bid) is None


async def test_wrong_nonce_in_the_id_token_is_refused(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    location = await start(client, shop.shop_id, bid)
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["nonce"] = "attacker-chosen-nonce"
    swapped = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    response = await client.get(await authorize(swapped, line_user_id()))
    assert response.status == 400 and "確認できませんでした" in await response.text()
    assert await browser_owner(client, shop.shop_id, bid) is None


async def test_an_authorization_code_works_once(
    client: TestClient[Any, Any], shop: ShopHandle, linesim_url: str
) -> None:
    first_bid, second_bid, user = browser_id(), browser_id(), line_user_id()
    first = await authorize(await start(client, shop.shop_id, first_bid), user)
    assert (await client.get(first)).status == 200
    used_code = parse_qs(urlsplit(first).query)["code"][0]
    second = await authorize(await start(client, shop.shop_id, second_bid), user)
    parts = urlsplit(second)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["code"] = used_code
    response = await client.get(urlunsplit(("", "", parts.path, urlencode(query), "")))
    assert response.status == 400
    assert await browser_owner(client, shop.shop_id, second_bid) is None
    async with aiohttp.ClientSession() as session:  # and linesim itself refuses it, as LINE does
        form = {"grant_type": "authorization_code", "code": used_code, "client_id": LOGIN_CHANNEL_ID,
                "client_secret": shop.login_secret,  # type: ignore[attr-defined]
                "redirect_uri": f"http://shop-bot.test/l/{shop.shop_id}/callback"}
        async with session.post(linesim_url + "/oauth2/v2.1/token", data=form) as answer:
            assert answer.status == 400 and (await answer.json())["error"] == "invalid_grant"


async def test_cancelled_login_links_nothing(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    url = await start(client, shop.shop_id, bid) + "&cancel=1"
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as r:
        callback = urlsplit(r.headers["Location"])
    response = await client.get(urlunsplit(("", "", callback.path, callback.query, "")))
    assert response.status == 400 and "キャンセル" in await response.text()
    assert await browser_owner(client, shop.shop_id, bid) is None


@pytest.mark.parametrize(
    "return_url",
    [
        "https://evil.example/phish",
        "//evil.example/",
        "https://shop.example@evil.example/",
        "https://shop.example.evil.example/",
        "javascript:alert(document.cookie)",
        "https://evil.example\\@shop.example/",
        "http://shop.example/",  # another scheme is another origin
        "https://shop.example:8443/",
    ],
)
async def test_open_redirect_attempts_are_refused(
    client: TestClient[Any, Any], shop: ShopHandle, return_url: str
) -> None:
    response = await client.get(f"/l/{shop.shop_id}", params={"bid": browser_id(), "return": return_url},
                                allow_redirects=False)
    assert response.status == 400 and "Location" not in response.headers
    assert "evil" not in await response.text()
    assert await client.app[DATABASE]["link_tokens"].count_documents({}) == 0


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://shop.example/a?b=c", True),
        ("https://SHOP.example:443/a", True),
        ("https://shop.example.evil.example/", False),
        ("https://user:pw@shop.example/", False),
        ("ftp://shop.example/", False),
        ("https://shop.example/\r\nSet-Cookie: x", False),
        ("", False),
    ],
)
def test_safe_return_url(url: str, allowed: bool) -> None:
    assert (safe_return_url(url, [SHOP_ORIGIN]) == url) is allowed


async def test_bad_starts_are_clear_pages(client: TestClient[Any, Any], shop: ShopHandle, make_shop: Any) -> None:
    assert (await client.get("/l/shp_0000000000000000", params={"bid": browser_id()})).status == 404
    missing = await client.get(f"/l/{shop.shop_id}", allow_redirects=False)
    assert missing.status == 400 and "連携ボタン" in await missing.text()
    plain = await make_shop()  # no LINE Login channel: the chat code is offered instead
    put = await client.put(f"/admin/api/v1/shops/{plain.shop_id}/settings/tracking",
                           json={"allowed_origins": [SHOP_ORIGIN]}, headers=plain.auth)
    assert put.status == 200
    token = await link_token(client, plain.shop_id, browser_id())
    page = await client.get(f"/l/{plain.shop_id}", params={"lt": token}, allow_redirects=False)
    assert page.status == 200 and "連携コード" in await page.text()


# --- the ID token check itself (pure) ---

SECRET = "0123456789abcdef0123456789abcdef"
NOW = START


def token(**overrides: Any) -> str:
    claims = {"iss": ISSUER, "sub": "U" + "a" * 32, "aud": LOGIN_CHANNEL_ID, "iat": int(NOW.timestamp()),
              "exp": int(NOW.timestamp()) + 3600, "nonce": "n-1", **overrides}
    secret = claims.pop("_secret", SECRET)
    algorithm = claims.pop("_alg", "HS256")
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm=algorithm)


def test_a_good_id_token_verifies() -> None:
    assert verify_id_token(token(), LOGIN_CHANNEL_ID, SECRET, "n-1", NOW)["sub"] == "U" + "a" * 32


def _tampered() -> str:
    header, payload, signature = token().split(".")
    evil = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b"U" + b"a" * 32, b"U" + b"b" * 32)
    ).decode()
    return f"{header}.{evil}.{signature}"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: _tampered(), id="tampered-payload"),
        pytest.param(lambda: token(_secret="fedcba9876543210fedcba9876543210"), id="other-secret"),
        pytest.param(lambda: jwt.encode({"iss": ISSUER, "sub": "U1", "aud": LOGIN_CHANNEL_ID,
                                         "exp": time.time() + 9e9, "iat": 0, "nonce": "n-1"},
                                        key="", algorithm="none"), id="alg-none"),  # "": PyJWT's no key
        pytest.param(lambda: token(aud="999"), id="audience"),
        pytest.param(lambda: token(iss="https://evil.example"), id="issuer"),
        pytest.param(lambda: token(exp=int(NOW.timestamp()) - 1), id="expired"),
        pytest.param(lambda: token(iat=int(NOW.timestamp()) + 3600, exp=int(NOW.timestamp()) + 7200), id="future"),
        pytest.param(lambda: token(nonce="n-2"), id="nonce"),
        pytest.param(lambda: token(nonce=None), id="no-nonce"),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
    ],
)
def test_bad_id_tokens_are_refused(bad: Any) -> None:
    with pytest.raises(IdTokenError):
        verify_id_token(bad(), LOGIN_CHANNEL_ID, SECRET, "n-1", NOW)


async def test_opened_from_line_without_a_browser_id_bounces_through_the_shop(
    client: TestClient[Any, Any], shop: ShopHandle
) -> None:
    put = await client.put(f"/admin/api/v1/shops/{shop.shop_id}/settings/messaging",
                           json={"shop_url": "https://shop.example/?from=line"}, headers=shop.auth)
    assert put.status == 200, await put.text()
    response = await client.get(f"/l/{shop.shop_id}", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "https://shop.example/?from=line&lcrm_link=login"
    code = await client.get(f"/l/{shop.shop_id}/code", allow_redirects=False)
    assert code.headers["Location"] == "https://shop.example/?from=line&lcrm_link=code"
