"""Dashboard sign-in: signed, HttpOnly, SameSite=Strict, expiring session cookies and CSRF tokens.

The cookie holds a random session token signed with the deployment's key
(`storage.deployment_keys`, made once, shared by every process): a forged or
altered cookie is refused before any database read. The session itself lives
in `dashboard_sessions` (hashed token, expiry, CSRF token), so signing out
ends it everywhere and rotating the shop's API keys ends every session opened
with an old key. Every form carries the session's CSRF token; the sign-in form
carries one bound to a short-lived pre-session cookie (no login CSRF).
Never logs a cookie, token or key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from bot.typedefs import CLOCK, DATABASE, SETTINGS
from storage.dashboard_sessions import DashboardSessions, Session
from storage.deployment_keys import DeploymentKeys
from storage.shops import Shop, ShopRepository

SESSION_COOKIE = "lcrm_dashboard"
LOGIN_COOKIE = "lcrm_dashboard_login"
COOKIE_PATH = "/dashboard"
SESSION_TTL = timedelta(hours=8)
LOGIN_TTL = timedelta(hours=1)
KEY_PURPOSE = "dashboard_sessions"
SIGNING_KEY: web.AppKey[bytes] = web.AppKey("dashboard_signing_key", bytes)


async def signing_key_ctx(app: web.Application) -> AsyncIterator[None]:
    """Read (or make, on a new deployment) the cookie-signing key once the database is open."""
    app[SIGNING_KEY] = await DeploymentKeys(app[DATABASE]).get_or_create(KEY_PURPOSE, app[CLOCK].now())
    yield


def _mac(key: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(key: bytes, value: str) -> str:
    """`value.signature` (value must not contain a dot)."""
    return f"{value}.{_mac(key, 'cookie', value)}"


def unsign(key: bytes, signed: str | None) -> str | None:
    """The value of a cookie we signed; None when missing, malformed or signed with another key."""
    if not signed or signed.count(".") != 1 or len(signed) > 512:
        return None
    value, signature = signed.split(".")
    try:
        expected = _mac(key, "cookie", value)
        return value if hmac.compare_digest(signature.encode("ascii"), expected.encode("ascii")) else None
    except (UnicodeEncodeError, binascii.Error):
        return None


def login_csrf(key: bytes, nonce: str) -> str:
    """The sign-in form's token: bound to the pre-session cookie's nonce, so another site cannot forge it."""
    return _mac(key, "login", nonce)


def same_token(expected: str, presented: str | None) -> bool:
    if not presented:
        return False
    try:
        return hmac.compare_digest(expected.encode("ascii"), presented.encode("ascii"))
    except UnicodeEncodeError:
        return False


@dataclass(frozen=True)
class SignedIn:
    shop: Shop
    session: Session
    token: str

    @property
    def csrf(self) -> str:
        return self.session.csrf


def _secure(request: web.Request) -> bool:
    return request.app[SETTINGS].public_base.startswith("https://")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, ttl: timedelta) -> None:
    response.set_cookie(name, sign(request.app[SIGNING_KEY], value), max_age=int(ttl.total_seconds()),
                        path=COOKIE_PATH, httponly=True, samesite="Strict", secure=_secure(request))


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=_secure(request))


def cookie_value(request: web.Request, name: str) -> str | None:
    return unsign(request.app[SIGNING_KEY], request.cookies.get(name))


async def current(request: web.Request) -> SignedIn | None:
    """The signed-in shop of this request, if its cookie names a live session opened with a current key."""
    token = cookie_value(request, SESSION_COOKIE)
    if token is None:
        return None
    database = request.app[DATABASE]
    session = await DashboardSessions(database).get(token, request.app[CLOCK].now())
    if session is None:
        return None
    shop = await ShopRepository(database).get(session.shop_id)
    if shop is None or not any(hmac.compare_digest(session.key_hash, stored)
                               for stored in shop.doc.get("api_key_hashes", [])):
        return None  # the key was rotated away (or the shop is gone): sign in again
    return SignedIn(shop, session, token)


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)
