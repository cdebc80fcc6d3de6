"""Declared admin routes: one declaration drives validation, auth and the OpenAPI document.

A route names its body/query pydantic models; the wrapper parses and validates
before the handler runs, so handlers only ever see valid input, and the OpenAPI
document is generated from the very models that validate (never written twice).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from admin_api.auth import authenticate_operator, authenticate_shop
from bot.typedefs import CLOCK, DATABASE
from core.errors import from_validation_error
from core.json_body import parse_json
from storage.database import Database
from storage.shops import Shop

BASE_PATH = "/admin/api/v1"
SHOP_PATH = "/shops/{shop_id}"

Auth = Literal["operator", "shop", "none"]
BodyT = TypeVar("BodyT")
QueryT = TypeVar("QueryT")


@dataclass
class Call(Generic[BodyT, QueryT]):
    """What a handler gets: the request, the authenticated shop, and validated input."""

    request: web.Request
    shop: Shop | None
    body: BodyT
    query: QueryT
    params: Mapping[str, str] | None = None  # path parameters; None: the request's own (`match_info`)

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def db(self) -> Database:
        return self.request.app[DATABASE]

    def now(self) -> datetime:
        return self.request.app[CLOCK].now()

    def path(self, name: str) -> str:
        return (self.params if self.params is not None else self.request.match_info)[name]

    @property
    def current_shop(self) -> Shop:
        assert self.shop is not None, "route declared without shop auth"
        return self.shop


@dataclass
class Reply:
    """A handler's answer when the status differs from the route's default."""

    status: int
    data: Any


Handler = Callable[[Call[Any, Any]], Awaitable[Any]]


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: Auth
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any
    status: int
    tag: str
    extra_statuses: dict[int, str] = field(default_factory=dict)

    @property
    def full_path(self) -> str:
        return BASE_PATH + self.path


class AdminApi:
    """A set of admin routes: each feature module fills its own (`@routes.route(...)`), and
    `admin_api.setup_admin_api` composes them with `include` (nothing registers itself globally)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def include(self, *others: AdminApi) -> AdminApi:
        for other in others:
            self.routes.extend(other.routes)
        return self

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth = "shop",
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        tag: str = "shops",
        extra_statuses: dict[int, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(
                Route(method, path, handler, summary, auth, body, query, response, status, tag, extra_statuses or {})
            )
            return handler

        return register

    def find(self, method: str, path: str) -> Route | None:
        """The route declared for this method and path template (e.g. "/shops/{shop_id}/reports/links")."""
        return next((r for r in self.routes if r.method == method and r.path == path), None)

    def setup(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, route.full_path, _wrap(route))


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        shop: Shop | None = None
        if route.auth == "operator":
            authenticate_operator(request)
        elif route.auth == "shop":
            shop = await authenticate_shop(request)
        query = None
        if route.query is not None:
            try:
                query = route.query.model_validate(dict(request.query))
            except ValidationError as exc:
                raise from_validation_error(exc) from None
        body = None
        if route.body is not None:
            raw = await request.read()
            parse_json(raw)  # depth, NaN, control characters: a clear 400 before any model sees it
            try:
                # Strict JSON validation: `true` is no integer, "100" no number, a number no date.
                body = route.body.model_validate_json(raw, strict=True)
            except ValidationError as exc:
                raise from_validation_error(exc) from None
        result = await route.handler(Call(request, shop, body, query))
        if isinstance(result, web.StreamResponse):
            return result
        status = route.status
        if isinstance(result, Reply):
            status, result = result.status, result.data
        if status == 204:
            return web.Response(status=204)
        return web.json_response(to_jsonable(result), status=status)

    return handle


def to_jsonable(value: Any) -> Any:
    """Response data as plain JSON (pydantic models dumped in JSON mode, datetimes as ISO 8601)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value

