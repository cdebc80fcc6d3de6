"""The one error shape of our HTTP API: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError


class ApiError(Exception):
    """A client error to be answered with a 4xx; nothing was changed."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.field)


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "field": field}}, status=status)


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's location as a dotted path: ("steps", 0, "label") -> "steps[0].label"."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + part
    return path


def from_validation_error(exc: ValidationError, *, prefix: str = "") -> ApiError:
    """The first problem pydantic found, with the field named."""
    first = exc.errors(include_url=False)[0]
    loc = tuple(part for part in first["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    path = field_path(loc)
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    return ApiError(422, "validation_error", f"{path or 'body'}: {message}", path or None)
