"""LINE Login (OpenID Connect) linking: `/l/{shop_id}` and `/l/{shop_id}/callback`.

`/l/{shop_id}?lt=<link token>&return=<shop URL>` (the token from
`linking.link_token`, proving the browser asked itself; never a raw browser ID)
stores a one-time `state` (10 minutes, bound to the shop, the browser and a fresh `nonce`), sets it in
a cookie of this browser, and redirects to LINE Login with
`bot_prompt=aggressive` so the user also adds the official account.
The callback refuses anything but that browser's own unused, unexpired state
of this shop, exchanges the code, verifies the ID token (HS256 signature with
the login channel secret, issuer, audience, expiry against our clock, nonce)
and links `sub` to the browser. Every refusal is a clear page; nothing is linked.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
from aiohttp import web

from bot.typedefs import CLOCK, DATABASE, LINE, SETTINGS
from linking.link_token import LINK_KEY, redeem_link_token
from linking.links import link_browser
from linking.pages import error_page, render, safe_return_url
from storage.link_tokens import LinkTokenRepository, Redemption, TokenKind
from storage.shop_settings import MessagingSettings, ShopSettingsRepository, TrackingSettings
from storage.shops import Shop, ShopRepository

log = logging.getLogger("linecrm.linking")

ISSUER = "https://access.line.me"
STATE_TTL = timedelta(minutes=10)
STATE_COOKIE = "lcrm_login_state"
CLOCK_SKEW_SECONDS = 300

REDEMPTION_PAGES: dict[Redemption, tuple[str, str]] = {
    Redemption.UNKNOWN: ("連携できませんでした", "このリンクは無効です。ショップのページからもう一度お試しください。"),
    Redemption.WRONG_SHOP: ("連携できませんでした", "このリンクは別のショップのものです。ショップのページからもう一度お試しください。"),
    Redemption.USED: ("連携できませんでした", "このリンクはすでに使用されています。ショップのページからもう一度お試しください。"),
    Redemption.EXPIRED: ("連携できませんでした", "このリンクは有効期限が切れています。ショップのページからもう一度お試しください。"),
}


class IdTokenError(Exception):
    """The ID token must not be trusted (bad signature, issuer, audience, expiry or nonce)."""


def verify_id_token(id_token: str, channel_id: str, channel_secret: str, nonce: str, now: datetime) -> dict[str, Any]:
    """Verify as LINE documents for web login (HS256 with the channel secret); returns the claims.

    Expiry is checked against our injected clock, not the library's wall clock.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            channel_secret,
            algorithms=["HS256"],
            audience=channel_id,
            issuer=ISSUER,
            options={"require": ["iss", "sub", "aud", "exp", "iat"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        raise IdTokenError(f"invalid ID token: {exc}") from None
    timestamp = now.timestamp()
    if not isinstance(claims["exp"], int | float) or claims["exp"] <= timestamp:
        raise IdTokenError("ID token expired")
    if not isinstance(claims["iat"], int | float) or claims["iat"] > timestamp + CLOCK_SKEW_SECONDS:
        raise IdTokenError("ID token issued in the future")
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
        raise IdTokenError("ID token nonce does not match")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise IdTokenError("ID token has no subject")
    return claims


def authorize_url(login_base: str, channel_id: str, redirect_uri: str, state: str, nonce: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": channel_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": "openid profile",
            "nonce": nonce,
            "bot_prompt": "aggressive",
        }
    )
    return f"{login_base}/oauth2/v2.1/authorize?{query}"


def callback_url(public_base: str, shop_id: str) -> str:
    return f"{public_base}/l/{shop_id}/callback"


class TokenExchangeError(Exception):
    """LINE did not give us tokens for the code (used twice, expired, wrong client...)."""


async def exchange_code(
    session: aiohttp.ClientSession, api_base: str, code: str, redirect_uri: str, channel_id: str,
    channel_secret: str, timeout: float,
) -> dict[str, Any]:
    """The tokens for an authorization code, through the process's pooled session (no session per login)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": channel_id,
        "client_secret": channel_secret,
    }
    try:
        async with session.post(f"{api_base}/oauth2/v2.1/token", data=form,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            body = await response.json(content_type=None)
            if response.status != 200 or not isinstance(body, dict) or "id_token" not in body:
                error = body.get("error") if isinstance(body, dict) else None
                raise TokenExchangeError(f"token endpoint answered {response.status} ({error})")
            return body
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise TokenExchangeError(f"token endpoint unreachable: {exc!r}") from None


@dataclass(frozen=True)
class LinkStart:
    """A validated request to start linking a browser."""

    shop: Shop
    browser_id: str
    return_url: str | None


async def link_start(request: web.Request) -> LinkStart | web.Response:
    """Shop, browser ID and return URL of a link page, or the error page to show."""
    db = request.app[DATABASE]
    shop = await ShopRepository(db).get(request.match_info["shop_id"])
    if shop is None:
        return error_page(404, "ページが見つかりません", "このショップは登録されていません。")
    tracking = await ShopSettingsRepository(db).get(shop.shop_id, TrackingSettings)
    raw_return = request.query.get("return")
    return_url = safe_return_url(raw_return, tracking.allowed_origins)
    if raw_return and return_url is None:
        return error_page(400, "連携できませんでした", "戻り先のURLがこのショップのものではありません。")
    token = request.query.get("lt", "")
    if not token:
        # Opened from LINE (e.g. the welcome message), or an old `?bid=` link: no proof of the browser
        # here. Bounce through the shop's site, whose script comes back with a link token
        # (`lcrm_link` in track.js). A raw browser ID is never accepted.
        shop_url = (await ShopSettingsRepository(db).get(shop.shop_id, MessagingSettings)).shop_url
        if shop_url:
            kind = "code" if request.path.endswith("/code") else "login"
            bounce = shop_url + ("&" if "?" in shop_url else "?") + urlencode({"lcrm_link": kind})
            return web.Response(status=302, headers={"Location": bounce, "Cache-Control": "no-store"})
        return error_page(
            400, "連携できませんでした", "ブラウザを確認できませんでした。ショップのページの連携ボタンからお試しください。",
            return_url,
        )
    redeemed = await redeem_link_token(db, request.app[LINK_KEY], shop.shop_id, token, request.app[CLOCK].now())
    if redeemed.browser_id is None:
        title, message = REDEMPTION_PAGES[redeemed.status]
        return error_page(400, title, message, return_url)
    browser_id = redeemed.browser_id
    return LinkStart(shop, browser_id, return_url)


async def start_login(request: web.Request) -> web.StreamResponse:
    start = await link_start(request)
    if isinstance(start, web.Response):
        return start
    shop = start.shop
    if not (shop.line.login_channel_id and shop.line.login_channel_secret):
        # No LINE Login channel: the chat code still links this browser.
        from linking.chat_code import code_page

        return await code_page(request, start)
    settings = request.app[SETTINGS]
    now = request.app[CLOCK].now()
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    data = {"browser_id": start.browser_id, "nonce": nonce, "return_url": start.return_url}
    await LinkTokenRepository(request.app[DATABASE]).issue(TokenKind.LOGIN_STATE, state, shop.shop_id, data, STATE_TTL, now)
    location = authorize_url(
        settings.line_login_base, shop.line.login_channel_id, callback_url(settings.public_base, shop.shop_id), state,
        nonce,
    )
    response = web.Response(
        status=302, headers={"Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )
    response.set_cookie(
        STATE_COOKIE, state, max_age=int(STATE_TTL.total_seconds()), path=f"/l/{shop.shop_id}/",
        httponly=True, samesite="Lax", secure=settings.public_base.startswith("https://"),
    )
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    db = request.app[DATABASE]
    settings = request.app[SETTINGS]
    now = request.app[CLOCK].now()
    shop = await ShopRepository(db).get(request.match_info["shop_id"])
    if shop is None:
        return error_page(404, "ページが見つかりません", "このショップは登録されていません。")
    if not (shop.line.login_channel_id and shop.line.login_channel_secret):
        return error_page(400, "連携できませんでした", "このショップではLINEログインが設定されていません。")
    state = request.query.get("state", "")
    cookie = request.cookies.get(STATE_COOKIE, "")
    if not state or not cookie or not hmac.compare_digest(state.encode(), cookie.encode()):
        # A state that did not start in this browser (forged, or a link sent to someone else).
        return error_page(400, "連携できませんでした", "連携を始めたブラウザで、ショップのページからもう一度お試しください。")
    redeemed = await LinkTokenRepository(db).redeem(TokenKind.LOGIN_STATE, state, shop.shop_id, now)
    if not redeemed.ok:
        title, message = REDEMPTION_PAGES[redeemed.status]
        return error_page(400, title, message)
    tracking = await ShopSettingsRepository(db).get(shop.shop_id, TrackingSettings)
    return_url = safe_return_url(redeemed.data.get("return_url"), tracking.allowed_origins)
    code = request.query.get("code")
    if request.query.get("error") or not code:
        return error_page(400, "連携を中止しました", "LINEログインがキャンセルされました。", return_url)
    redirect_uri = callback_url(settings.public_base, shop.shop_id)
    try:
        tokens = await exchange_code(
            request.app[LINE].http_session(), settings.line_api_base, code, redirect_uri, shop.line.login_channel_id, shop.line.login_channel_secret,
            settings.line_timeout_seconds,
        )
        claims = verify_id_token(
            str(tokens["id_token"]), shop.line.login_channel_id, shop.line.login_channel_secret,
            redeemed.data["nonce"], now,
        )
    except TokenExchangeError as exc:
        log.warning("LINE Login code exchange failed shop=%s: %s", shop.shop_id, exc)
        return error_page(400, "連携できませんでした", "LINEログインを確認できませんでした。もう一度お試しください。", return_url)
    except IdTokenError as exc:
        log.warning("LINE Login ID token refused shop=%s: %s", shop.shop_id, exc)
        return error_page(400, "連携できませんでした", "LINEログインを確認できませんでした。もう一度お試しください。", return_url)
    outcome = await link_browser(db, shop.shop_id, redeemed.data["browser_id"], claims["sub"], "line_login", now)
    if not return_url:
        return_url = (await ShopSettingsRepository(db).get(shop.shop_id, MessagingSettings)).shop_url
    response = render("linked.html", shop_name=shop.name, return_url=return_url, link_status=outcome.status.value)
    response.del_cookie(STATE_COOKIE, path=f"/l/{shop.shop_id}/")
    return response


def setup_login(app: web.Application) -> None:
    app.router.add_get("/l/{shop_id}", start_login)
    app.router.add_get("/l/{shop_id}/callback", callback)
