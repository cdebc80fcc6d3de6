"""Admin API authentication: the operator token (shop creation) and per-shop API keys."""

from __future__ import annotations

import hmac

from aiohttp import web

from bot.typedefs import DATABASE, SETTINGS
from core.errors import ApiError
from storage.shops import Shop, ShopRepository


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate_operator(request: web.Request) -> None:
    """Only the operator may create shops; with no OPERATOR_TOKEN configured, nobody may."""
    configured = request.app[SETTINGS].operator_token
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "unauthorized", "operator bearer token required")
    if configured is None:
        raise ApiError(403, "forbidden", "shop creation is disabled: OPERATOR_TOKEN is not set")
    if not hmac.compare_digest(token.encode(), configured.get_secret_value().encode()):
        raise ApiError(401, "unauthorized", "invalid operator token")


async def authenticate_shop(request: web.Request) -> Shop:
    """The shop named in the path, if the bearer key is one of its keys (else 401, whoever's key it is)."""
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "unauthorized", "shop API key required (Authorization: Bearer <key>)")
    shop_id = request.match_info.get("shop_id", "")
    shop = await ShopRepository(request.app[DATABASE]).authenticate(shop_id, token)
    if shop is None:
        raise ApiError(401, "unauthorized", "invalid API key for this shop")
    return shop
