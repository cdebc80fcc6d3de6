"""Background work of the web process: started after a response, never lost or leaked.

Tasks are held in a set on the app (a bare `create_task` may be garbage-collected
mid-flight) and cancelled and awaited on shutdown; work that must survive a
shutdown is persisted first (e.g. webhook events) and recovered later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

from bot.typedefs import BACKGROUND_TASKS


async def background_tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    tasks: set[asyncio.Task[None]] = set()
    app[BACKGROUND_TASKS] = tasks
    yield
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def spawn(app: web.Application, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[None]:
    """Run `coro` after the response, keeping a reference until it finishes."""
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
    tasks = app[BACKGROUND_TASKS]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task
