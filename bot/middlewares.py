"""Map every failure to a JSON answer: ours to 5xx (logged with context), the client's to 4xx.

Before any handler: secret-carrying headers must be printable ASCII (401 otherwise).
"""

from __future__ import annotations

import logging
import re

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


# Headers that carry secrets: printable ASCII only. A non-ASCII or binary value is a wrong credential
# (401, as a wrong ASCII one gets) and must never reach a comparison that would raise on it.
ASCII_HEADERS: dict[str, tuple[str, str]] = {
    "Authorization": ("unauthorized", "Authorization"),
    "X-Line-Signature": ("invalid_signature", "x-line-signature"),
}
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")


def check_headers(request: web.Request) -> None:
    for name, (code, field) in ASCII_HEADERS.items():
        for value in request.headers.getall(name, []):
            if not _PRINTABLE_ASCII.match(value):
                raise ApiError(401, code, f"{name}: only printable ASCII is allowed", field)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_headers(request)
        return await handler(request)
    except RecursionError:
        # Only hostile nesting gets here (a JSON body parsed outside `core.json_body`): the client's error.
        return error_response(400, "invalid_json", "JSON nested too deeply")
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
