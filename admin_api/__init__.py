"""The merchant admin API (`/admin/api/v1`): routes, pydantic models, OpenAPI, API-key auth.

Handlers validate with pydantic and call repositories; they never hold storage
queries inline. Every route is declared on `registry.api`, which also drives
the OpenAPI document.
"""

from __future__ import annotations

from aiohttp import web

from admin_api import (  # noqa: F401 - registers routes
    customers,
    links,
    orders,
    points,
    products,
    reminders,
    rich_menu,
    settings,
    shops,
)
from admin_api.openapi import build_openapi
from admin_api.registry import BASE_PATH, api
from bot.typedefs import SETTINGS


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(api, server_url=request.app[SETTINGS].public_base))


def setup_admin_api(app: web.Application) -> None:
    api.setup(app)
    app.router.add_get(BASE_PATH + "/openapi.json", openapi_document)
