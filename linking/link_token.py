"""Link tokens: the proof that the browser being linked asked for it itself.

A browser ID is no secret (it is in events, orders, admin exports, maybe logs), so
a link page never accepts one. Instead the tracking script keeps a second,
private value beside its browser ID - the browser secret, never sent anywhere
but here - and `POST /t/{shop_id}/link-token` (CORS: the shop's origins only)
trades (browser ID, browser secret) for a link token:

- the secret's hash is stored on the browser the first time it is presented
  (the script presents it as soon as it makes a new browser ID, before the ID
  is sent anywhere); after that only the same secret gets a token, so knowing
  a browser ID is not enough to link - or re-link - that browser;
- the token is `<expiry>.<nonce>.<signature>`: HMAC-SHA256 over shop, expiry
  and nonce with a per-deployment key, so a forged or expired token is refused
  without a database write (the link pages cannot be used to make us write or
  call LINE); it lives `TOKEN_TTL` and is redeemed once (the nonce is a
  `link_tokens` entry bound to the shop and the browser).

Browsers created before link tokens existed have no secret yet: the first
secret presented for them is kept (trust on first use); the script presents
one on its first page view after the upgrade.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from bot.typedefs import CLOCK, DATABASE
from core.errors import ApiError, from_validation_error
from core.json_body import parse_json
from linking.models import BrowserId
from storage.browsers import BrowserRepository
from storage.database import Database
from storage.link_tokens import LinkTokenRepository, Redemption, TokenKind
from storage.shop_settings import ShopSettingsRepository, TrackingSettings
from storage.shops import ShopRepository
from storage.signing_keys import signing_key

TOKEN_TTL = timedelta(minutes=10)
MAX_BODY_BYTES = 4 * 1024
KEY_PURPOSE = "link_token"
TOKEN_RE_MAX = 200

BrowserSecret = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{22,128}$")]

LINK_KEY: web.AppKey[bytes] = web.AppKey("link_token_key", bytes)


class LinkTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    browser_id: BrowserId
    browser_secret: BrowserSecret


@dataclass(frozen=True)
class IssuedLinkToken:
    token: str
    expires_at: datetime


def secret_hash(browser_secret: str) -> str:
    return hashlib.sha256(f"lcrm-browser-secret\x1f{browser_secret}".encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signature(key: bytes, shop_id: str, expires: int, nonce: str) -> str:
    return _b64(hmac.new(key, f"{shop_id}\x1f{expires}\x1f{nonce}".encode(), hashlib.sha256).digest()[:18])


def sign_token(key: bytes, shop_id: str, nonce: str, expires_at: datetime) -> str:
    expires = int(expires_at.timestamp())
    return f"{expires}.{nonce}.{_signature(key, shop_id, expires, nonce)}"


def verify_token(key: bytes, shop_id: str, token: str, now: datetime) -> str | None:
    """The token's nonce if it is ours, for this shop and not expired; None otherwise (no I/O)."""
    if not token or len(token) > TOKEN_RE_MAX or not token.isascii():
        return None
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
        return None
    expires, nonce, signature = int(parts[0]), parts[1], parts[2]
    if not hmac.compare_digest(signature, _signature(key, shop_id, expires, nonce)):
        return None
    if expires <= now.timestamp():
        return None
    return nonce


async def issue_link_token(
    database: Database, key: bytes, shop_id: str, browser_id: str, browser_secret: str, now: datetime
) -> IssuedLinkToken | None:
    """A token for this browser, or None when the secret is not the browser's."""
    if not await BrowserRepository(database).claim_secret(shop_id, browser_id, secret_hash(browser_secret), now):
        return None
    nonce = secrets.token_urlsafe(24)
    await LinkTokenRepository(database).issue(
        TokenKind.LINK_TOKEN, nonce, shop_id, {"browser_id": browser_id}, TOKEN_TTL, now
    )
    expires_at = now + TOKEN_TTL
    return IssuedLinkToken(sign_token(key, shop_id, nonce, expires_at), expires_at)


@dataclass(frozen=True)
class RedeemedLink:
    status: Redemption
    browser_id: str | None = None


async def redeem_link_token(database: Database, key: bytes, shop_id: str, token: str, now: datetime) -> RedeemedLink:
    """Use the token up (once); forged or expired tokens are refused before any database access."""
    nonce = verify_token(key, shop_id, token, now)
    if nonce is None:
        return RedeemedLink(Redemption.UNKNOWN)
    redeemed = await LinkTokenRepository(database).redeem(TokenKind.LINK_TOKEN, nonce, shop_id, now)
    if not redeemed.ok:
        return RedeemedLink(redeemed.status)
    return RedeemedLink(Redemption.OK, str(redeemed.data["browser_id"]))


def _cors(origin: str | None, allowed: list[str]) -> dict[str, str]:
    headers = {"Vary": "Origin", "Cache-Control": "no-store"}
    if origin is not None and origin in allowed:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


async def post_link_token(request: web.Request) -> web.Response:
    """`POST /t/{shop_id}/link-token` from the tracking script: `{browser_id, browser_secret}` -> a link token."""
    database = request.app[DATABASE]
    origin = request.headers.get("Origin")
    headers = {"Vary": "Origin", "Cache-Control": "no-store"}
    try:
        shop = await ShopRepository(database).get(request.match_info["shop_id"])
        if shop is None:
            raise ApiError(404, "not_found", "unknown shop")
        allowed = (await ShopSettingsRepository(database).get(shop.shop_id, TrackingSettings)).allowed_origins
        headers = _cors(origin, allowed)
        if origin is None or origin not in allowed:
            raise ApiError(403, "origin_not_allowed", "only the shop's own pages may ask for a link token", "Origin")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"at most {MAX_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"at most {MAX_BODY_BYTES} bytes")
        try:
            body = LinkTokenRequest.model_validate(parse_json(raw))
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        issued = await issue_link_token(database, request.app[LINK_KEY], shop.shop_id, body.browser_id,
                                        body.browser_secret, request.app[CLOCK].now())
        if issued is None:
            raise ApiError(403, "browser_claimed", "this browser ID belongs to another browser", "browser_secret")
    except ApiError as exc:
        response = exc.response()
        response.headers.update(headers)
        return response
    return web.json_response({"link_token": issued.token, "expires_at": issued.expires_at.isoformat()},
                             headers=headers)


async def _key_ctx(app: web.Application) -> AsyncIterator[None]:
    app[LINK_KEY] = await signing_key(app[DATABASE], KEY_PURPOSE, app[CLOCK].now())
    yield


def setup_link_token(app: web.Application) -> None:
    app.cleanup_ctx.append(_key_ctx)
    app.router.add_post("/t/{shop_id}/link-token", post_link_token)
