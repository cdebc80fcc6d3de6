"""The merchant admin API (`/admin/api/v1`): routes, pydantic models, OpenAPI, API-key auth.

Handlers validate with pydantic and call repositories; they never hold storage
queries inline. Each feature module declares its routes on its own `routes`;
`admin_routes()` lists them all, and the same list drives the OpenAPI document.
"""

from __future__ import annotations

from aiohttp import web

from admin_api import (
    broadcasts,
    carts,
    customers,
    links,
    orders,
    points,
    products,
    reminders,
    reports,
    rich_menu,
    segments,
    sequences,
    settings,
    shops,
)
from admin_api.openapi import build_openapi
from admin_api.registry import BASE_PATH, AdminApi
from bot.typedefs import ADMIN_API, SETTINGS


def admin_routes() -> AdminApi:
    """Every admin route, in the order the OpenAPI document lists them."""
    return AdminApi().include(
        shops.routes, settings.routes, products.routes, orders.routes, customers.routes, points.routes,
        links.routes, reminders.routes, reports.routes, rich_menu.routes, sequences.routes, segments.routes,
        broadcasts.routes, carts.routes,
    )


def setup_admin_api(app: web.Application) -> None:
    api = admin_routes()
    api.setup(app)
    app[ADMIN_API] = api

    async def openapi_document(request: web.Request) -> web.Response:
        return web.json_response(build_openapi(api, server_url=request.app[SETTINGS].public_base))

    app.router.add_get(BASE_PATH + "/openapi.json", openapi_document)
