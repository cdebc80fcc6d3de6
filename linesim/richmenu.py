"""Rich menu endpoints: create, upload image, default menu, list/get/delete.

Image dimensions are read from the PNG IHDR / JPEG SOF header so LINE's size
rules can be enforced without an imaging library.
"""

from __future__ import annotations

import secrets
import struct
from typing import Any

from aiohttp import web

from .common import LineError, ValidationFailed, channel_of, read_json
from .state import Channel, RichMenu
from .validation import MAX_LABEL, MAX_POSTBACK_DATA, USER_ID_RE, utf16_len, validate_request

MAX_IMAGE = 1024 * 1024
MAX_AREAS = 20
REQUIRED = ("size", "selected", "name", "chatBarText", "areas")
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, None if unreadable."""
    if content_type == "image/png":
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        return None
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def size_errors(width: int, height: int) -> list[str]:
    """LINE's rich menu size rules (shared by the menu object and its image)."""
    errors = []
    if not 800 <= width <= 2500:
        errors.append("width must be between 800 and 2500")
    if height < 250:
        errors.append("height must be at least 250")
    if height and width / height < 1.45:
        errors.append("width/height must be at least 1.45")
    return errors


def _menu_errors(body: Any) -> list[tuple[str, str]]:
    errors = validate_request("RichMenuRequest", body)
    if errors:
        return errors
    errors = [(f, "must be specified") for f in REQUIRED if body.get(f) is None]
    if errors:
        return errors
    size = body["size"]
    width, height = size.get("width", 0), size.get("height", 0)
    errors += [("size", m) for m in size_errors(width, height)]
    if len(body["areas"]) > MAX_AREAS:
        errors.append(("areas", f"Size must be between 0 and {MAX_AREAS}"))
    for i, area in enumerate(body["areas"]):
        b = area.get("bounds") or {}
        if b.get("x", 0) + b.get("width", 0) > width or b.get("y", 0) + b.get("height", 0) > height:
            errors.append((f"areas[{i}].bounds", "must be within the rich menu size"))
        action = area.get("action") or {}
        if utf16_len(str(action.get("label") or "")) > MAX_LABEL:
            errors.append((f"areas[{i}].action.label", f"Length must be between 0 and {MAX_LABEL}"))
        if utf16_len(str(action.get("data") or "")) > MAX_POSTBACK_DATA:
            errors.append((f"areas[{i}].action.data", f"Length must be between 0 and {MAX_POSTBACK_DATA}"))
    return errors


def _menu(channel: Channel, request: web.Request) -> tuple[str, RichMenu]:
    menu_id = request.match_info["richMenuId"]
    menu = channel.rich_menus.get(menu_id)
    if menu is None:
        raise LineError(404, "Not found")
    return menu_id, menu


async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    errors = _menu_errors(body)
    if errors:
        raise ValidationFailed(errors)
    _, channel = channel_of(request)
    if len(channel.rich_menus) >= 1000:
        raise LineError(400, "The maximum number of rich menus has been reached")
    menu_id = f"richmenu-{secrets.token_hex(16)}"
    channel.rich_menus[menu_id] = RichMenu(body=body)
    return web.json_response({"richMenuId": menu_id})


async def upload(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    _, menu = _menu(channel, request)
    content_type = request.content_type
    if content_type not in ("image/png", "image/jpeg"):
        raise LineError(415, "Unsupported Media Type")
    data = await request.read()
    if len(data) > MAX_IMAGE:
        raise LineError(413, "Request Entity Too Large")
    if menu.image is not None:
        raise LineError(400, "An image has already been uploaded to the richmenu")
    dims = image_size(data, content_type)
    if dims is None:
        raise LineError(400, "The image could not be read as " + content_type)
    problems = size_errors(*dims)
    declared = menu.body["size"]
    if not problems and (declared.get("width"), declared.get("height")) != dims:
        problems.append(f"image size {dims[0]}x{dims[1]} does not match the rich menu size")
    if problems:
        raise LineError(400, "Invalid image: " + "; ".join(problems))
    menu.image, menu.content_type = data, content_type
    return web.json_response({})


def _response(menu_id: str, menu: RichMenu) -> dict[str, Any]:
    return {"richMenuId": menu_id, **menu.body}


async def set_default(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    menu_id, menu = _menu(channel, request)
    if menu.image is None:
        raise LineError(400, "must upload richmenu image before applying it to user")
    channel.default_rich_menu = menu_id
    return web.json_response({})


async def get_default(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    if channel.default_rich_menu is None:
        raise LineError(404, "no default richmenu")
    return web.json_response({"richMenuId": channel.default_rich_menu})


async def cancel_default(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    channel.default_rich_menu = None
    return web.json_response({})


async def list_menus(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    return web.json_response({"richmenus": [_response(k, m) for k, m in channel.rich_menus.items()]})


async def get_menu(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    return web.json_response(_response(*_menu(channel, request)))


async def delete_menu(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    menu_id, _ = _menu(channel, request)
    del channel.rich_menus[menu_id]
    if channel.default_rich_menu == menu_id:
        channel.default_rich_menu = None
    for user in [u for u, linked in channel.user_rich_menus.items() if linked == menu_id]:
        del channel.user_rich_menus[user]  # as LINE: users of a deleted menu see the default again
    return web.json_response({})


def _user_errors(user_ids: list[Any]) -> list[tuple[str, str]]:
    return [(f"userIds[{i}]", "Invalid user ID") for i, uid in enumerate(user_ids)
            if not isinstance(uid, str) or not USER_ID_RE.match(uid)]


def _linkable(channel: Channel, menu_id: str) -> None:
    menu = channel.rich_menus.get(menu_id)
    if menu is None:
        raise LineError(404, "richmenu not found")
    if menu.image is None:
        raise LineError(400, "must upload richmenu image before applying it to user")


async def bulk_link(request: web.Request) -> web.Response:
    """`POST /v2/bot/richmenu/bulk/link`: one menu for up to 500 users (LINE answers 202, applies async)."""
    body = await read_json(request)
    errors = validate_request("RichMenuBulkLinkRequest", body) or _user_errors(body["userIds"])
    if errors:
        raise ValidationFailed(errors)
    _, channel = channel_of(request)
    _linkable(channel, body["richMenuId"])
    for user in body["userIds"]:
        channel.user_rich_menus[user] = body["richMenuId"]
    return web.json_response({}, status=202)


async def bulk_unlink(request: web.Request) -> web.Response:
    """`POST /v2/bot/richmenu/bulk/unlink`: up to 500 users back to the default menu (202)."""
    body = await read_json(request)
    errors = validate_request("RichMenuBulkUnlinkRequest", body) or _user_errors(body["userIds"])
    if errors:
        raise ValidationFailed(errors)
    _, channel = channel_of(request)
    for user in body["userIds"]:
        channel.user_rich_menus.pop(user, None)
    return web.json_response({}, status=202)


def _user(request: web.Request) -> str:
    uid = request.match_info["userId"]
    if not USER_ID_RE.match(uid):
        raise LineError(400, "The value for the 'userId' parameter is invalid")
    return uid


async def link_user(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    uid = _user(request)
    _linkable(channel, request.match_info["richMenuId"])
    channel.user_rich_menus[uid] = request.match_info["richMenuId"]
    return web.json_response({})


async def unlink_user(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    channel.user_rich_menus.pop(_user(request), None)
    return web.json_response({})


async def get_user_menu(request: web.Request) -> web.Response:
    """The menu linked to the user (404 when none: the user sees the default)."""
    _, channel = channel_of(request)
    menu_id = channel.user_rich_menus.get(_user(request))
    if menu_id is None:
        raise LineError(404, "the user has no richmenu")
    return web.json_response({"richMenuId": menu_id})


async def get_image(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    _, menu = _menu(channel, request)
    if menu.image is None:
        raise LineError(404, "Not found")
    return web.Response(body=menu.image, content_type=menu.content_type or "image/png")


ROUTES = [
    ("POST", "/v2/bot/richmenu", create, "richmenu_create"),
    ("POST", "/v2/bot/richmenu/bulk/link", bulk_link, "richmenu_bulk_link"),
    ("POST", "/v2/bot/richmenu/bulk/unlink", bulk_unlink, "richmenu_bulk_unlink"),
    ("GET", "/v2/bot/richmenu/list", list_menus, "richmenu_list"),
    ("POST", "/v2/bot/richmenu/{richMenuId}/content", upload, "richmenu_upload"),
    ("GET", "/v2/bot/richmenu/{richMenuId}/content", get_image, "richmenu_download"),
    ("GET", "/v2/bot/richmenu/{richMenuId}", get_menu, "richmenu_get"),
    ("DELETE", "/v2/bot/richmenu/{richMenuId}", delete_menu, "richmenu_delete"),
    ("POST", "/v2/bot/user/all/richmenu/{richMenuId}", set_default, "richmenu_set_default"),
    ("GET", "/v2/bot/user/all/richmenu", get_default, "richmenu_get_default"),
    ("DELETE", "/v2/bot/user/all/richmenu", cancel_default, "richmenu_cancel_default"),
    ("POST", "/v2/bot/user/{userId}/richmenu/{richMenuId}", link_user, "richmenu_link"),
    ("DELETE", "/v2/bot/user/{userId}/richmenu", unlink_user, "richmenu_unlink"),
    ("GET", "/v2/bot/user/{userId}/richmenu", get_user_menu, "richmenu_get_user"),
]
