"""Admin routes for the shop's rich menu: preview the rendered image, deploy it to LINE.

The menu itself (buttons, labels, colours) is the `rich_menu` settings section
(`PUT /settings/rich_menu`); deploying renders it and replaces the live menu.
"""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web
from linebot.v3.messaging import ApiException
from pydantic import BaseModel, Field

from admin_api.registry import SHOP_PATH, AdminApi, Call
from bot.richmenu.deploy import deploy
from bot.richmenu.font import FontNotFound
from bot.richmenu.render import render
from bot.typedefs import LINE, SETTINGS
from core.errors import ApiError
from storage.shop_settings import RichMenuSettings, ShopSettingsRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`


class RichMenuDeployed(BaseModel):
    rich_menu_id: str
    width: int
    height: int
    areas: int
    image_bytes: int
    replaced: list[str] = Field(description="IDs of this shop's previous rich menus, now deleted")


def _line_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or b"{}").get("message") or "")[:300]
    except (ValueError, AttributeError, TypeError):
        return ""


@routes.route("GET", SHOP_PATH + "/rich-menu/preview.png", summary="The rich menu image as it would be deployed (PNG)",
           tag="rich menu", extra_statuses={503: "No Japanese font installed"})
async def preview_rich_menu(call: Call[None, None]) -> web.Response:
    settings = await ShopSettingsRepository(call.db).get(call.current_shop.shop_id, RichMenuSettings)
    try:
        image = render(settings)
    except FontNotFound as exc:
        raise ApiError(503, "font_missing", str(exc)) from None
    return web.Response(body=image, content_type="image/png")


@routes.route("POST", SHOP_PATH + "/rich-menu/deploy", summary="Render the rich menu from its settings and make it the default",
           response=RichMenuDeployed, status=201, tag="rich menu",
           extra_statuses={502: "LINE refused the rich menu", 503: "No Japanese font installed"})
async def deploy_rich_menu(call: Call[None, None]) -> RichMenuDeployed:
    shop = call.current_shop
    settings = await ShopSettingsRepository(call.db).get(shop.shop_id, RichMenuSettings)
    app_settings = call.app[SETTINGS]
    try:
        deployed = await deploy(
            call.app[LINE].for_token(shop.line.channel_access_token),
            data_api_base=app_settings.line_data_api_base, access_token=shop.line.channel_access_token,
            shop_id=shop.shop_id, settings=settings, now=call.now(), timeout=app_settings.line_timeout_seconds,
        )
    except FontNotFound as exc:
        raise ApiError(503, "font_missing", str(exc)) from None
    except ApiException as exc:
        raise ApiError(502, "line_error", f"LINE answered {exc.status}: {_line_message(exc)}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(502, "line_unreachable", f"LINE did not answer: {type(exc).__name__}") from None
    return RichMenuDeployed(**deployed.__dict__)
