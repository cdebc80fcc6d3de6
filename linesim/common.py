"""Shared aiohttp keys and helpers for LINE-shaped responses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .state import Channel, SimState
from .validation import Errors, error_body

STATE: web.AppKey[SimState] = web.AppKey("linesim_state", SimState)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("linesim_request_id", str)
CHANNEL: web.RequestKey[str] = web.RequestKey("linesim_channel", str)

MAX_BODY = 2 * 1024 * 1024


class LineError(Exception):
    """Raised by handlers; the middleware turns it into LINE's error JSON."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, **extra}
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, headers=self.headers)


class ValidationFailed(LineError):
    def __init__(self, errors: Errors) -> None:
        super().__init__(400, "")
        self.body = error_body(errors)


def state_of(request: web.Request) -> SimState:
    return request.app[STATE]


def channel_of(request: web.Request) -> tuple[str, Channel]:
    cid = request[CHANNEL]
    return cid, state_of(request).channel(cid)


async def read_json(request: web.Request) -> Any:
    """Body as JSON; 413 over LINE's 2 MB limit, 400 when not JSON."""
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise LineError(413, "Request Entity Too Large")
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise LineError(400, "The request body has 1 error(s)",
                        details=[{"message": "Malformed JSON", "property": ""}]) from None
