"""The signed-in shop's admin API, called in-process: the dashboard shows what the API answers.

Every figure and action of the dashboard goes through a declared admin route
(`admin_api.registry.Route`): the same input models validate, the same handler
runs, and the answer is the same JSON the API would send — so the numbers on
a page equal the API's by construction, and a page built on a route that
another flow has not added yet (`has` is False) lights up once it is composed,
with no change here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from admin_api.registry import SHOP_PATH, Call, Reply, to_jsonable
from bot.typedefs import ADMIN_API
from core.errors import ApiError, from_validation_error
from storage.shops import Shop


class RouteMissing(LookupError):
    """The admin API declares no such route (the feature has not landed in this build)."""


@dataclass(frozen=True)
class AdminGateway:
    request: web.Request
    shop: Shop

    def has(self, method: str, path: str) -> bool:
        """Whether the admin API declares `method path` (path under the shop, e.g. "/segments/{segment_id}")."""
        return self.request.app[ADMIN_API].find(method, SHOP_PATH + path) is not None

    async def call(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: Any = None,
                   **params: str) -> Any:
        """The route's JSON answer; raises ApiError as the API would answer it (4xx/5xx), or RouteMissing."""
        route = self.request.app[ADMIN_API].find(method, SHOP_PATH + path)
        if route is None:
            raise RouteMissing(f"{method} {path}")
        try:
            parsed_query = route.query.model_validate(dict(query or {})) if route.query is not None else None
            # As the HTTP path validates a body: its JSON, strictly (`admin_api.registry`).
            parsed_body = (route.body.model_validate_json(json.dumps(body, ensure_ascii=False), strict=True)
                           if route.body is not None else None)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        result = await route.handler(Call(self.request, self.shop, parsed_body, parsed_query,
                                          {"shop_id": self.shop.shop_id, **params}))
        if isinstance(result, Reply):
            result = result.data
        if isinstance(result, web.StreamResponse):
            raise ApiError(406, "not_json", "this route does not answer JSON")
        return to_jsonable(result)

    async def get(self, path: str, *, query: Mapping[str, str] | None = None, **params: str) -> Any:
        return await self.call("GET", path, query=query, **params)
