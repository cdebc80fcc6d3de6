"""The web application factory: `create_app()` wires settings, resources and routes.

Long-lived resources (database, LINE clients, background tasks) are opened in
`cleanup_ctx` generators inside the running loop and closed in reverse order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from admin_api import setup_admin_api
from bot.health import healthz
from bot.middlewares import error_middleware
from bot.redirect import setup_redirect
from bot.tasks import background_tasks_ctx
from bot.typedefs import CLOCK, DATABASE, LINE, SETTINGS
from bot.webhook import setup_webhook
from core.clock import Clock, SystemClock
from core.line_client import LineClients
from core.settings import Settings, load_settings
from dashboard import setup_dashboard
from flows.listeners import connect_listeners
from linking import setup_linking
from storage import schema
from storage.lifecycle import open_database

log = logging.getLogger("linecrm.web")

MAX_BODY_BYTES = 2 * 1024 * 1024


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_database(settings.mongodb_uri, settings.mongodb_db, settings.data_dir, schema.INDEXES) as database:
        connect_listeners(database.signals)
        app[DATABASE] = database
        yield


async def _line_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    clients = LineClients(settings.line_api_base, timeout=settings.line_timeout_seconds)
    app[LINE] = clients
    yield
    await clients.close()


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> web.Application:
    """Build the web app; tests call this directly with their own settings and clock."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings or load_settings()
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_line_ctx)
    app.cleanup_ctx.append(background_tasks_ctx)
    app.router.add_get("/healthz", healthz)
    setup_admin_api(app)
    setup_redirect(app)
    setup_webhook(app)
    setup_linking(app)
    setup_dashboard(app)  # after the database context: it reads its signing key at start-up
    return app
