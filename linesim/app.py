"""linesim application factory: routes plus the middleware that makes every
Messaging API call behave like LINE's front door (request ID, auth, injected
faults, rate limits, LINE-shaped errors)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import limits, login, messaging, richmenu, sim
from .common import CHANNEL, MAX_BODY, REQUEST_ID, STATE, LineError, state_of
from .state import SimConfig, SimState, channel_id, request_id

AUTH_FAILED = ("Authentication failed. Confirm that the access token in the "
               "authorization header is valid.")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Dropped(Exception):
    """The connection was closed on purpose (fault injection)."""


def _token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _api(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = _token(request)
    if token is None:
        raise LineError(401, AUTH_FAILED)
    request[CHANNEL] = channel_id(token)
    state = state_of(request)
    endpoint = request.match_info.route.name or ""
    fault = limits.take_fault(state, endpoint)
    if fault is not None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.drop:
            if request.transport is not None:
                request.transport.abort()
            raise _Dropped()
        if fault.status:
            raise LineError(fault.status, "Internal Server Error" if fault.status >= 500
                            else "Injected fault")
    if not limits.allow_request(state, state.channel(request[CHANNEL]), endpoint):
        raise LineError(429, limits.RATE_LIMIT_MESSAGE)
    return await handler(request)


@web.middleware
async def line_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id()
    request[REQUEST_ID] = rid
    is_api = not request.path.startswith(("/_sim", *login.PUBLIC_PREFIXES))
    try:
        response = await _api(request, handler) if is_api else await handler(request)
    except LineError as exc:
        response = exc.response()
    except _Dropped:
        response = web.Response(status=500)  # never reaches the client
    except web.HTTPException as exc:  # unknown path, wrong method, body too large
        if not is_api:
            raise
        response = web.json_response({"message": exc.reason}, status=exc.status)
    response.headers["X-Line-Request-Id"] = rid
    return response


def create_app(config: SimConfig | None = None) -> web.Application:
    """A fresh simulator; all state lives on the returned app."""
    app = web.Application(middlewares=[line_middleware], client_max_size=MAX_BODY + 1024 * 1024)
    app[STATE] = SimState(config or SimConfig())
    for method, path, handler, name in messaging.ROUTES + richmenu.ROUTES:
        app.router.add_route(method, path, handler, name=name)
    for method, path, handler in sim.ROUTES:
        app.router.add_route(method, path, handler)
    login.setup(app)
    return app
