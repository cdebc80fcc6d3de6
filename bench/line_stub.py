"""A minimal LINE Messaging API stand-in for benchmarks: it answers as LINE does, without validation.

linesim checks every request against LINE's OpenAPI documents, which costs CPU
a load test would then measure instead of the bot. This stub answers the calls
a webhook handler makes - reply, push, get profile - with LINE's status codes
and bodies (a reply token works once; a repeated retry key answers 409), and
counts what it was asked, so a benchmark can check that every event was answered.
It runs in its own process (`serve`), never inside the app under test.

    GET  /_stub/counts -> {"reply": n, "push": n, "profile": n, "invalid_reply": n, "retry_conflict": n}
    POST /_stub/reset
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from typing import Any

from aiohttp import web

USED_TOKENS_KEPT = 200_000


class _State:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.used_tokens: dict[str, None] = {}
        self.retry_keys: dict[str, str] = {}


STATE: web.AppKey[_State] = web.AppKey("stub_state", _State)


def _sent(messages: list[Any]) -> dict[str, Any]:
    return {"sentMessages": [{"id": str(secrets.randbelow(10**18)), "quoteToken": secrets.token_urlsafe(16)}
                             for _ in messages]}


def _request_id() -> dict[str, str]:
    return {"X-Line-Request-Id": secrets.token_hex(16)}


async def reply(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = json.loads(await request.read())
    token = body.get("replyToken")
    if not token or token in state.used_tokens:
        state.counts["invalid_reply"] += 1
        return web.json_response({"message": "Invalid reply token"}, status=400, headers=_request_id())
    state.used_tokens[token] = None
    if len(state.used_tokens) > USED_TOKENS_KEPT:
        state.used_tokens.pop(next(iter(state.used_tokens)))
    state.counts["reply"] += 1
    return web.json_response(_sent(body.get("messages") or []), headers=_request_id())


async def push(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = json.loads(await request.read())
    key = request.headers.get("X-Line-Retry-Key")
    if key is not None and key in state.retry_keys:
        state.counts["retry_conflict"] += 1
        return web.json_response({"message": "The retry key is already accepted"}, status=409,
                                 headers={**_request_id(), "x-line-accepted-request-id": state.retry_keys[key]})
    headers = _request_id()
    if key is not None:
        state.retry_keys[key] = headers["X-Line-Request-Id"]
    state.counts["push"] += 1
    return web.json_response(_sent(body.get("messages") or []), headers=headers)


async def profile(request: web.Request) -> web.Response:
    request.app[STATE].counts["profile"] += 1
    user_id = request.match_info["user_id"]
    return web.json_response({"userId": user_id, "displayName": "LINEユーザー", "language": "ja"},
                             headers=_request_id())


async def counts(request: web.Request) -> web.Response:
    return web.json_response(dict(request.app[STATE].counts))


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].counts.clear()
    return web.json_response({})


def create_app() -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE] = _State()
    app.router.add_post("/v2/bot/message/reply", reply)
    app.router.add_post("/v2/bot/message/push", push)
    app.router.add_get("/v2/bot/profile/{user_id}", profile)
    app.router.add_get("/_stub/counts", counts)
    app.router.add_post("/_stub/reset", reset)
    return app


def serve(port: int, ready: Any) -> None:
    """Process entry point: serve on 127.0.0.1:`port`, set `ready` once listening."""

    async def main() -> None:
        runner = web.AppRunner(create_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())
