"""A real browser: a demo shop page with our script, two product views, LINE Login through
linesim's consent page (the script trades its browser secret for a link token first), the "linked"
page — and the app then holds the views under that LINE user.

Headless Chromium from Debian (`make test` installs it), driven with Playwright's Python package.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.typedefs import DATABASE
from core.clock import FixedClock
from core.settings import Settings
from linesim.login import sim_user_id
from storage.embedded import free_port
from tests.conftest import OPERATOR_TOKEN, START
from tests.linking.conftest import sim_call

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}")

PRODUCT_PAGE = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>{title}</title>
<script src="{bot}/t/track.js" data-shop="{shop}" async></script></head>
<body><main data-lcrm-product-id="{product}"><h1>{title}</h1>
<a id="next" href="/products/p2">次の商品</a>
<a id="link" data-lcrm-link href="#">LINEで友だち追加・連携</a></main></body></html>"""


def demo_shop(bot_url: str, shop_id: str) -> web.Application:
    async def product(request: web.Request) -> web.Response:
        product_id = request.match_info["product_id"]
        html = PRODUCT_PAGE.format(title=f"商品 {product_id}", bot=bot_url, shop=shop_id, product=product_id)
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/products/{product_id}", product)
    return app


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_browser_views_products_then_links_through_line_login(
    aiohttp_server: Callable[..., Awaitable[TestServer]], aiohttp_client: Any, settings: Settings, linesim_url: str
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api", reason="Playwright's Python package is missing")
    bot_port = free_port()
    bot_url = f"http://127.0.0.1:{bot_port}"
    app = create_app(settings.model_copy(update={"public_base_url": bot_url}), clock=FixedClock(START))
    bot_server = await aiohttp_server(app, port=bot_port)
    bot = await aiohttp_client(bot_server)
    login_secret = secrets.token_hex(16)
    created = await bot.post("/admin/api/v1/shops", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, json={
        "name": "デモショップ", "channel_secret": secrets.token_hex(16), "channel_access_token": "tok-demo",
        "line_login_channel_id": "1670000000", "line_login_channel_secret": login_secret})
    shop = await created.json()
    shop_port = free_port()
    shop_origin = f"http://localhost:{shop_port}"
    await aiohttp_server(demo_shop(bot_url, shop["shop_id"]), port=shop_port)
    put = await bot.put(f"/admin/api/v1/shops/{shop['shop_id']}/settings/tracking",
                        json={"allowed_origins": [shop_origin]}, headers={"Authorization": f"Bearer {shop['api_key']}"})
    assert put.status == 200
    await sim_call(linesim_url, "POST", "/_sim/login_channels", {"channel_id": "1670000000",
                                                                 "channel_secret": login_secret})
    await sim_call(linesim_url, "PUT", "/_sim/login/clock", {"now": START.isoformat()})
    db = app[DATABASE]

    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{shop_origin}/products/p1?utm_source=line&utm_campaign=winter")
            await page.wait_for_function("window.LineCrm && window.LineCrm.loaded")
            browser_id = await page.evaluate("LineCrm.browserId()")
            await page.click("#next")
            await page.wait_for_url(f"{shop_origin}/products/p2")
            await page.wait_for_function("document.querySelector('#link').href.includes('/l/')")

            async def two_views() -> bool:
                return await db["product_views"].count_documents({"browser_id": browser_id}) == 2

            await wait_for(two_views)
            await page.click("#link")  # → /l/{shop} → linesim's consent page
            await page.wait_for_selector("#login")
            await page.fill("#display_name", "山田花子")
            await page.click("#login")  # → callback → the "linked" page
            await page.wait_for_selector("#linked")
            back = await page.get_attribute("#back-to-shop", "href")
            assert back == f"{shop_origin}/products/p2"
            await page.click("#back-to-shop")
            await page.wait_for_url(f"{shop_origin}/products/p2")
            # From a link in LINE (no browser ID): bounce through the shop's page and back with it.
            put = await bot.put(f"/admin/api/v1/shops/{shop['shop_id']}/settings/messaging",
                                json={"shop_url": f"{shop_origin}/products/p1"},
                                headers={"Authorization": f"Bearer {shop['api_key']}"})
            assert put.status == 200
            await page.goto(f"{bot_url}/l/{shop['shop_id']}/code")
            await page.wait_for_selector("#chat-code")
            # The link pages got a link token, never the browser ID (nor its secret).
            secret = next(c["value"] for c in await page.context.cookies() if c["name"] == "_lcrm_bs")
            assert "lt=" in page.url and browser_id not in page.url and secret not in page.url
            chat_code = await db["link_tokens"].find_one({"kind": "chat_code", "shop_id": shop["shop_id"]})
            assert chat_code is not None
            assert chat_code["data"]["browser_id"] == browser_id
        finally:
            await browser.close()

    user = sim_user_id("山田花子")
    stored = await db["browsers"].find_one({"shop_id": shop["shop_id"], "browser_id": browser_id})
    assert stored is not None
    assert stored["line_user_id"] == user and stored["link_method"] == "line_login"
    assert stored["first_utm"] == {"source": "line", "campaign": "winter"}
    views = [v async for v in db["product_views"].find({"shop_id": shop["shop_id"], "line_user_id": user})]
    assert sorted(v["product_id"] for v in views) == ["p1", "p2"]
    customer = await db["customers"].find_one({"shop_id": shop["shop_id"], "line_user_id": user})
    assert customer is not None
    assert customer["linked"] is True and customer["browser_ids"] == [browser_id]
