"""Putting a rendered rich menu live: create, upload the image, make it the default, delete the old ones.

A rich menu's image cannot be replaced, so re-rendering creates a new menu and
only then deletes the previous ones of this shop (recognised by name), leaving
menus the merchant made by other means alone. If the upload fails the new,
image-less menu is deleted again, so a failed deploy leaves the old menu live.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApiBlob,
    Configuration,
    RichMenuRequest,
)

from bot.richmenu.layout import is_ours, rich_menu_object
from bot.richmenu.render import render
from core.line_client import LineClient
from storage.shop_settings import RichMenuSettings

log = logging.getLogger("linecrm.richmenu")


@dataclass(frozen=True)
class Deployed:
    rich_menu_id: str
    width: int
    height: int
    areas: int
    image_bytes: int
    replaced: list[str]


async def create_with_image(line: LineClient, *, data_api_base: str, access_token: str, body: dict[str, Any],
                            image: bytes, timeout: float) -> str:
    """Create a rich menu and upload its image; the menu is deleted again when the upload fails."""
    api = line.api
    limit = aiohttp.ClientTimeout(total=timeout)
    created = await api.create_rich_menu(RichMenuRequest.from_dict(body), _request_timeout=limit)
    menu_id = str(created.rich_menu_id)
    try:
        async with AsyncApiClient(Configuration(host=data_api_base, access_token=access_token)) as client:
            await AsyncMessagingApiBlob(client).set_rich_menu_image(
                menu_id, bytearray(image), _headers={"Content-Type": "image/png"}, _request_timeout=limit
            )
    except BaseException:
        with contextlib.suppress(ApiException, OSError):
            await api.delete_rich_menu(menu_id, _request_timeout=limit)
        raise
    return menu_id


async def deploy(
    line: LineClient, *, data_api_base: str, access_token: str, shop_id: str, settings: RichMenuSettings,
    now: datetime, timeout: float,
) -> Deployed:
    """Create and publish the shop's rich menu; raises the SDK's ApiException when LINE refuses."""
    body = rich_menu_object(settings, shop_id, now.strftime("%Y%m%dT%H%M%S"))
    image = render(settings)
    api = line.api
    limit = aiohttp.ClientTimeout(total=timeout)
    menu_id = await create_with_image(line, data_api_base=data_api_base, access_token=access_token, body=body,
                                      image=image, timeout=timeout)
    try:
        await api.set_default_rich_menu(menu_id, _request_timeout=limit)
    except BaseException:
        with contextlib.suppress(ApiException, OSError):
            await api.delete_rich_menu(menu_id, _request_timeout=limit)
        raise
    replaced: list[str] = []
    listing = await api.get_rich_menu_list(_request_timeout=limit)
    for menu in listing.richmenus:
        if menu.rich_menu_id != menu_id and is_ours(menu.name, shop_id):
            await api.delete_rich_menu(menu.rich_menu_id, _request_timeout=limit)
            replaced.append(menu.rich_menu_id)
    log.info("shop %s: rich menu %s deployed, %d old menu(s) deleted", shop_id, menu_id, len(replaced))
    return Deployed(menu_id, body["size"]["width"], body["size"]["height"], len(body["areas"]), len(image), replaced)
