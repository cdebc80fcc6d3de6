"""`GET /r/{token}`: count a click on a button we sent, then 302 to its target with UTM parameters.

The token is signed with the shop's click key (`delivery.clicks`) and names either
a product of that shop — sent to the product's stored URL, looked up now — or a
URL we put in the message ourselves; never a URL taken from the request, so this
is not an open redirect. It names the delivery by its retry key, not by the
customer's LINE user ID.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from bot.typedefs import CLOCK, DATABASE
from delivery.clicks import click_secret, parse_click, shop_of
from storage.delivery_log import DeliveryLog
from storage.products import ProductRepository
from storage.shops import ShopRepository

MAX_TOKEN = 1000


def with_utm(url: str, params: dict[str, str]) -> str:
    """The URL with our UTM parameters set (the shop's own query parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def _not_found() -> web.Response:
    return web.Response(status=404, text="このリンクは無効です。", content_type="text/plain")


def _web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


async def click_redirect(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    shop_id = shop_of(token) if len(token) <= MAX_TOKEN else None
    database = request.app[DATABASE]
    shop = await ShopRepository(database).get(shop_id) if shop_id else None
    click = parse_click(token, click_secret(shop.line.channel_secret)) if shop else None
    if shop is None or click is None or click.shop_id != shop.shop_id:
        return _not_found()
    url = click.url
    if click.product_id is not None:
        product = await ProductRepository(database).get(shop.shop_id, click.product_id)
        url = str((product or {}).get("url") or "")
    if not url or not _web_url(url):
        return _not_found()
    await DeliveryLog(database).record_click(shop.shop_id, click.flow, click.step, click.key, click.target,
                                             request.app[CLOCK].now())
    content = f"step{click.step}" if click.step is not None else "message"
    raise web.HTTPFound(with_utm(url, {"utm_source": "line", "utm_medium": "message", "utm_campaign": click.flow,
                                       "utm_content": content}))


def setup_redirect(app: web.Application) -> None:
    app.router.add_get("/r/{token}", click_redirect)
