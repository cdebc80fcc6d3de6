"""`/healthz`: is this process up, and can it reach the database?"""

from __future__ import annotations

import pymongo
from aiohttp import web

from bot.typedefs import DATABASE

# A dead database must show at once (the supervisor is restarting it), not after a driver timeout.
HEALTH_TIMEOUT_SECONDS = 1.0


async def healthz(request: web.Request) -> web.Response:
    # The driver's own deadline, not a cancelled task: a connection cancelled while it opens is never closed.
    with pymongo.timeout(HEALTH_TIMEOUT_SECONDS):
        db_ok = await request.app[DATABASE].ping()
    if db_ok:
        return web.json_response({"status": "ok", "db": "ok"})
    return web.json_response({"status": "degraded", "db": "unreachable"}, status=503)
