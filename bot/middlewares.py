"""Map every failure to a JSON answer: ours to 5xx (logged with context), the client's to 4xx."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from core.errors import ApiError, error_response

log = logging.getLogger("linecrm.web")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type not in ("text/plain", "application/octet-stream"):
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")
