"""`GET /t/track.js`: the tracking script from `assets/`, cacheable by browsers and CDNs.

Read once at start-up; an ETag lets a browser revalidate cheaply after the
max-age, so a new deploy reaches every shop page within a day.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

SCRIPT_PATH = Path(__file__).resolve().parent.parent / "assets" / "track.js"
MAX_AGE_SECONDS = 86_400


@dataclass(frozen=True)
class Script:
    body: bytes
    etag: str


SCRIPT: web.AppKey[Script] = web.AppKey("tracking_script", Script)


def load_script(path: Path = SCRIPT_PATH) -> Script:
    body = path.read_bytes()
    return Script(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


async def _script_ctx(app: web.Application) -> AsyncIterator[None]:
    app[SCRIPT] = load_script()
    yield


async def tracking_script(request: web.Request) -> web.Response:
    script = request.app[SCRIPT]
    headers = {
        "Cache-Control": f"public, max-age={MAX_AGE_SECONDS}",
        "ETag": script.etag,
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if script.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=script.body, content_type="application/javascript", charset="utf-8", headers=headers)


def setup_script(app: web.Application) -> None:
    app.cleanup_ctx.append(_script_ctx)
    app.router.add_get("/t/track.js", tracking_script)
