"""`GET /r/{token}`: count a click on a reminder button, then 302 to the product with UTM parameters.

The target is always the stored URL of a product of the delivery's own shop,
looked up by the token — never a URL taken from the request — so this is not
an open redirect. The token names a delivery (its retry-key UUID) and a bubble
index; it does not reveal the customer's LINE user ID.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from bot.typedefs import CLOCK, DATABASE
from storage.deliveries import DeliveryRepository
from storage.products import ProductRepository

TOKEN = re.compile(r"^([0-9a-f]{32})-(\d{1,2})$")


def with_utm(url: str, params: dict[str, str]) -> str:
    """The URL with our UTM parameters set (the shop's own query parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def _not_found() -> web.Response:
    return web.Response(status=404, text="このリンクは無効です。", content_type="text/plain")


async def click_redirect(request: web.Request) -> web.StreamResponse:
    match = TOKEN.match(request.match_info["token"])
    if match is None:
        return _not_found()
    delivery_id, index = str(uuid.UUID(hex=match.group(1))), int(match.group(2))
    database = request.app[DATABASE]
    deliveries = DeliveryRepository(database)
    delivery = await deliveries.get(delivery_id)
    products = (delivery or {}).get("products") or []
    if delivery is None or delivery.get("status") != "sent" or index >= len(products):
        return _not_found()
    product = await ProductRepository(database).get(delivery["shop_id"], products[index]["product_id"])
    url = str((product or {}).get("url") or "")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        return _not_found()
    await deliveries.record_click(delivery_id, index, request.app[CLOCK].now())
    target = with_utm(url, {
        "utm_source": "line", "utm_medium": "message", "utm_campaign": f"{delivery['campaign']}",
        "utm_content": f"step{delivery['step']}",
    })
    raise web.HTTPFound(target)


def setup_redirect(app: web.Application) -> None:
    app.router.add_get("/r/{token}", click_redirect)
