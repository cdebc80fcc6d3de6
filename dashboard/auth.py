"""Signing in and out of the dashboard with the shop ID and one of the shop's API keys."""

from __future__ import annotations

import re

from aiohttp import web

from bot.typedefs import CLOCK, DATABASE
from core.identifiers import SHOP_ID_PATTERN
from dashboard.pages import LOGIN_PATH, Page, form_fields, signed_in
from dashboard.render import render
from dashboard.session import (
    LOGIN_COOKIE,
    LOGIN_TTL,
    SESSION_COOKIE,
    SESSION_TTL,
    SIGNING_KEY,
    clear_cookie,
    cookie_value,
    current,
    login_csrf,
    new_login_nonce,
    same_token,
    set_cookie,
)
from storage.dashboard_sessions import DashboardSessions
from storage.shops import ShopRepository, hash_api_key

SHOP_ID = re.compile(SHOP_ID_PATTERN)
API_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def _login_page(request: web.Request, status: int = 200, message: str | None = None) -> web.Response:
    """The sign-in form with the token bound to the pre-session nonce (its cookie kept, or made now: so
    two open sign-in tabs both work)."""
    nonce = cookie_value(request, LOGIN_COOKIE) or new_login_nonce()
    response = render("login.html", status, shop=None, csrf=login_csrf(request.app[SIGNING_KEY], nonce),
                      timezone="Asia/Tokyo", path=request.path, message=message)
    set_cookie(request, response, LOGIN_COOKIE, nonce, LOGIN_TTL)
    return response


FAILED = "ショップIDまたはAPIキーが正しくありません。"


async def login_form(request: web.Request) -> web.StreamResponse:
    if await current(request) is not None:
        raise web.HTTPSeeOther("/dashboard")
    failed = request.query.get("failed") == "1"
    return _login_page(request, message=FAILED if failed else None)


async def login(request: web.Request) -> web.StreamResponse:
    fields = await form_fields(request)
    nonce = cookie_value(request, LOGIN_COOKIE)
    if nonce is None or not same_token(login_csrf(request.app[SIGNING_KEY], nonce), fields.get("csrf")):
        return _login_page(request, 403, "フォームの有効期限が切れました。もう一度ログインしてください。")
    shop_id = fields.get("shop_id", "").strip()
    api_key = fields.get("api_key", "").strip()
    shop = None
    if SHOP_ID.match(shop_id) and API_KEY.match(api_key):
        shop = await ShopRepository(request.app[DATABASE]).authenticate(shop_id, api_key)
    if shop is None:
        # The same answer whether the shop or the key is wrong (a key of another shop too); redirected
        # (post/redirect/get) so that reloading the page does not post the key again.
        raise web.HTTPSeeOther(LOGIN_PATH + "?failed=1")
    token, _ = await DashboardSessions(request.app[DATABASE]).start(shop.shop_id, hash_api_key(api_key),
                                                                   request.app[CLOCK].now(), SESSION_TTL)
    response = web.HTTPSeeOther("/dashboard")
    set_cookie(request, response, SESSION_COOKIE, token, SESSION_TTL)
    clear_cookie(request, response, LOGIN_COOKIE)
    raise response


@signed_in
async def logout(page: Page) -> web.StreamResponse:
    fields = await page.checked_form()
    if isinstance(fields, web.Response):
        return fields
    await DashboardSessions(page.request.app[DATABASE]).end(page.auth.token)
    response = web.HTTPSeeOther(LOGIN_PATH)
    clear_cookie(page.request, response, SESSION_COOKIE)
    raise response
