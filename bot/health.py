"""`/healthz`: is this process up, and can it reach the database?"""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.typedefs import DATABASE

# A dead database must show at once (the supervisor is restarting it), not after a driver timeout.
HEALTH_TIMEOUT_SECONDS = 1.0


async def healthz(request: web.Request) -> web.Response:
    try:
        db_ok = await asyncio.wait_for(request.app[DATABASE].ping(), timeout=HEALTH_TIMEOUT_SECONDS)
    except TimeoutError:
        db_ok = False
    if db_ok:
        return web.json_response({"status": "ok", "db": "ok"})
    return web.json_response({"status": "degraded", "db": "unreachable"}, status=503)
