"""Signing in and out: signed, HttpOnly, SameSite=Strict, expiring cookies; CSRF on every form; another
shop's key, a forged cookie, a replayed form without its token, an old session after sign-out, an
expired one and one opened with a rotated key are all refused — and nothing changes."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.typedefs import DATABASE
from core.clock import FixedClock
from core.settings import Settings
from dashboard.session import LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL, login_csrf, sign, unsign
from tests.conftest import ShopHandle
from tests.dashboard.conftest import csrf_of, sign_in

KEY = secrets.token_bytes(32)


@pytest.mark.parametrize("tamper", [
    lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # signature changed
    lambda s: "x" + s,  # value changed
    lambda s: s.split(".")[0],  # no signature
    lambda s: s + ".extra",
    lambda s: "",
    lambda s: "é." + s.split(".")[1],
    lambda s: sign(secrets.token_bytes(32), s.split(".")[0]),  # signed with another deployment's key
])
def test_a_cookie_we_did_not_sign_is_refused(tamper: Any) -> None:
    signed = sign(KEY, "token123")
    assert unsign(KEY, signed) == "token123"
    assert unsign(KEY, tamper(signed)) is None


def test_the_login_token_is_bound_to_its_nonce() -> None:
    assert login_csrf(KEY, "n1") != login_csrf(KEY, "n2")
    assert login_csrf(KEY, "n1") != sign(KEY, "n1").split(".")[1]  # purposes never share a MAC


def set_cookies(response: Any) -> dict[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return {name: jar[name] for name in jar}


async def signed_in_page(client: TestClient[Any, Any]) -> str:
    response = await client.get("/dashboard", allow_redirects=False)
    assert response.status == 200, response.status
    return await response.text()


async def is_signed_in(client: TestClient[Any, Any]) -> bool:
    response = await client.get("/dashboard", allow_redirects=False)
    if response.status == 303:
        assert response.headers["Location"] == "/dashboard/login"
        return False
    assert response.status == 200
    return True


async def test_sign_in_sets_a_signed_httponly_strict_expiring_cookie(client: TestClient[Any, Any],
                                                                   make_shop: Any) -> None:
    shop: ShopHandle = await make_shop(name="クッキー店")
    assert not await is_signed_in(client)
    form = await client.get("/dashboard/login")
    pre = set_cookies(form)[LOGIN_COOKIE]
    assert pre["httponly"] and pre["samesite"] == "Strict" and pre["path"] == "/dashboard" and pre["max-age"]
    response = await client.post("/dashboard/login", allow_redirects=False, data={
        "csrf": csrf_of(await form.text()), "shop_id": shop.shop_id, "api_key": shop.api_key})
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    cookie = set_cookies(response)[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/dashboard"
    assert int(cookie["max-age"]) == int(SESSION_TTL.total_seconds())
    assert not cookie["secure"]  # plain http in the test; https deployments get Secure (next test)
    assert shop.api_key not in cookie.value and cookie.value.count(".") == 1
    assert "クッキー店" in await signed_in_page(client)
    stored = await client.app[DATABASE]["dashboard_sessions"].find_one({})
    assert stored["shop_id"] == shop.shop_id and cookie.value.split(".")[0] not in str(stored)  # hashed


async def test_an_https_deployment_marks_cookies_secure(aiohttp_client: Any, settings: Settings,
                                                       clock: FixedClock) -> None:
    app = create_app(settings.model_copy(update={"public_base_url": "https://bot.example"}), clock=clock)
    client = await aiohttp_client(app)
    form = await client.get("/dashboard/login")
    assert set_cookies(form)[LOGIN_COOKIE]["secure"]


async def test_another_shops_key_or_a_wrong_key_is_refused(client: TestClient[Any, Any], make_shop: Any) -> None:
    mine, theirs = await make_shop(), await make_shop()
    for shop_id, key in ((mine.shop_id, theirs.api_key), (mine.shop_id, "lcrm_" + "x" * 43),
                         ("shp_unknown", mine.api_key), (mine.shop_id, ""), (mine.shop_id, "鍵")):
        response = await sign_in(client, shop_id, key)
        assert response.status == 303 and response.headers["Location"] == "/dashboard/login?failed=1"
        assert SESSION_COOKIE not in set_cookies(response)
        assert not await is_signed_in(client)
    page = await client.get("/dashboard/login?failed=1")
    assert "正しくありません" in await page.text()
    assert await client.app[DATABASE]["dashboard_sessions"].count_documents({}) == 0


async def test_sign_in_without_its_csrf_token_is_refused(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    fields = {"shop_id": shop.shop_id, "api_key": shop.api_key}
    # No pre-session cookie at all (a form posted from another site).
    client.session.cookie_jar.clear()
    response = await client.post("/dashboard/login", allow_redirects=False, data={**fields, "csrf": "x"})
    assert response.status == 403
    # A pre-session cookie but no token, or a token for another nonce.
    form = await client.get("/dashboard/login")
    token = csrf_of(await form.text())
    assert csrf_of(await (await client.get("/dashboard/login")).text()) == token  # a second tab shares it
    for csrf in ("", token[:-2], login_csrf(secrets.token_bytes(32), "n")):
        response = await client.post("/dashboard/login", allow_redirects=False, data={**fields, "csrf": csrf})
        assert response.status == 403
    assert not await is_signed_in(client)
    assert await client.app[DATABASE]["dashboard_sessions"].count_documents({}) == 0


async def test_forms_replayed_without_their_csrf_token_are_refused(client: TestClient[Any, Any],
                                                                  make_shop: Any) -> None:
    shop = await make_shop()
    assert (await sign_in(client, shop.shop_id, shop.api_key)).status == 303
    token = csrf_of(await signed_in_page(client))
    for data in ({}, {"csrf": ""}, {"csrf": token[::-1]}, {"csrf": "ü"}):
        response = await client.post("/dashboard/logout", allow_redirects=False, data=data)
        assert response.status == 403
        assert await is_signed_in(client)  # nothing happened
        response = await client.post("/dashboard/broadcasts", allow_redirects=False,
                                     data={**data, "segment_id": "s1", "broadcast_id": "b1", "text": "こんにちは"})
        assert response.status == 403
    # A token of an earlier session does not serve a later one.
    response = await client.post("/dashboard/logout", allow_redirects=False, data={"csrf": token})
    assert response.status == 303
    assert (await sign_in(client, shop.shop_id, shop.api_key)).status == 303
    response = await client.post("/dashboard/logout", allow_redirects=False, data={"csrf": token})
    assert response.status == 403 and await is_signed_in(client)


async def test_sign_out_ends_the_session_even_for_a_copied_cookie(client: TestClient[Any, Any],
                                                                 make_shop: Any) -> None:
    shop = await make_shop()
    response = await sign_in(client, shop.shop_id, shop.api_key)
    copied = set_cookies(response)[SESSION_COOKIE].value
    token = csrf_of(await signed_in_page(client))
    response = await client.post("/dashboard/logout", allow_redirects=False, data={"csrf": token})
    assert response.status == 303 and response.headers["Location"] == "/dashboard/login"
    assert set_cookies(response)[SESSION_COOKIE].value == ""
    assert not await is_signed_in(client)
    replay = await client.get("/dashboard", allow_redirects=False, cookies={SESSION_COOKIE: copied})
    assert replay.status == 303


async def test_a_forged_cookie_is_refused(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    response = await sign_in(client, shop.shop_id, shop.api_key)
    value = set_cookies(response)[SESSION_COOKIE].value
    token, signature = value.split(".")
    client.session.cookie_jar.clear()
    other = "B" if signature.endswith("A") else "A"  # a changed last character, never the real one
    for forged in (token, f"{token}.{signature[:-1]}{other}", f"{secrets.token_urlsafe(32)}.{signature}",
                   sign(secrets.token_bytes(32), token)):
        response = await client.get("/dashboard", allow_redirects=False, cookies={SESSION_COOKIE: forged})
        assert response.status == 303


async def test_a_session_expires(client: TestClient[Any, Any], make_shop: Any, clock: FixedClock) -> None:
    shop = await make_shop()
    await sign_in(client, shop.shop_id, shop.api_key)
    clock.advance(SESSION_TTL - timedelta(seconds=1))
    assert await is_signed_in(client)
    clock.advance(timedelta(seconds=1))
    assert not await is_signed_in(client)


async def test_rotating_the_api_key_ends_the_sessions_opened_with_the_old_one(client: TestClient[Any, Any],
                                                                            make_shop: Any) -> None:
    shop = await make_shop()
    await sign_in(client, shop.shop_id, shop.api_key)
    assert await is_signed_in(client)
    rotated = await client.post(f"/admin/api/v1/shops/{shop.shop_id}/api-key", headers=shop.auth)
    assert rotated.status == 200
    assert not await is_signed_in(client)
    await sign_in(client, shop.shop_id, (await rotated.json())["api_key"])
    assert await is_signed_in(client)


async def test_the_signing_key_is_made_once_per_deployment_and_shared(aiohttp_client: Any, settings: Settings,
                                                                     clock: FixedClock, make_shop: Any,
                                                                     client: TestClient[Any, Any]) -> None:
    """A second web process on the same database accepts the first one's cookies; another deployment does not."""
    shop = await make_shop()
    response = await sign_in(client, shop.shop_id, shop.api_key)
    cookie = set_cookies(response)[SESSION_COOKIE].value
    second = await aiohttp_client(create_app(settings, clock=clock))
    assert (await second.get("/dashboard", allow_redirects=False, cookies={SESSION_COOKIE: cookie})).status == 200
    keys = [doc async for doc in client.app[DATABASE]["deployment_keys"].find({})]
    assert len(keys) == 1 and len(keys[0]["key"]) == 32
    other = await aiohttp_client(create_app(settings.model_copy(update={"mongodb_db": settings.mongodb_db + "x"}),
                                            clock=clock))
    assert (await other.get("/dashboard", allow_redirects=False, cookies={SESSION_COOKIE: cookie})).status == 303


async def test_pages_need_a_session(client: TestClient[Any, Any]) -> None:
    for path in ("/dashboard", "/dashboard/flows/reminders", "/dashboard/customers", "/dashboard/customers/U1",
                 "/dashboard/broadcasts", "/dashboard/broadcasts/b1"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/dashboard/login", path
    for path in ("/dashboard/logout", "/dashboard/broadcasts", "/dashboard/broadcasts/b1/cancel"):
        response = await client.post(path, allow_redirects=False, data={"csrf": "x"})
        assert response.status == 403, path
        assert re.search(r"ログイン", await response.text())
