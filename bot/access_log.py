"""The access log: method, route pattern, status, size and time - never the path's IDs or the query.

Query strings carry link tokens, OAuth `code` and `state`, and paths carry click
tokens and IDs (`/r/{token}`), so the default `%r` line would write secrets and
browser IDs to the log. We log the route as declared (`/l/{shop_id}/callback`),
or `(unmatched)` for a path no route knows.
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


def route_of(request: BaseRequest) -> str:
    match_info = getattr(request, "match_info", None)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "(unmatched)"


class RouteAccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %d %.1fms",
            request.remote or "-", request.method, route_of(request), response.status,
            response.body_length, time * 1000,
        )
