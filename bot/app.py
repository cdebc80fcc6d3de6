"""The web application factory: `create_app()` wires settings, resources and routes.

Long-lived resources (database, LINE clients, background tasks) are opened in
`cleanup_ctx` generators inside the running loop and closed in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from admin_api import setup_admin_api
from bot.clock import Clock, SystemClock
from bot.health import healthz
from bot.line_client import LineClients
from bot.middlewares import error_middleware
from bot.redirect import setup_redirect
from bot.settings import Settings, load_settings
from bot.typedefs import BACKGROUND_TASKS, CLOCK, DATABASE, LINE, SETTINGS
from bot.webhook import setup_webhook
from linking import setup_linking
from storage.lifecycle import open_database
import scheduler.reminders  # noqa: F401,E402 - registers the reminder listeners (views, links, orders)

log = logging.getLogger("linecrm.web")

MAX_BODY_BYTES = 2 * 1024 * 1024


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_database(settings.mongodb_uri, settings.mongodb_db, settings.data_dir) as database:
        app[DATABASE] = database
        yield


async def _line_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    clients = LineClients(settings.line_api_base, timeout=settings.line_timeout_seconds)
    app[LINE] = clients
    yield
    await clients.close()


async def _background_tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    tasks: set[asyncio.Task[None]] = set()
    app[BACKGROUND_TASKS] = tasks
    yield
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def spawn(app: web.Application, coro: object) -> asyncio.Task[None]:
    """Run work after the response, keeping a reference so it is neither lost nor leaked."""
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
    tasks = app[BACKGROUND_TASKS]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> web.Application:
    """Build the web app; tests call this directly with their own settings and clock."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings or load_settings()
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_line_ctx)
    app.cleanup_ctx.append(_background_tasks_ctx)
    app.router.add_get("/healthz", healthz)
    setup_admin_api(app)
    setup_redirect(app)
    setup_webhook(app)
    setup_linking(app)
    return app
