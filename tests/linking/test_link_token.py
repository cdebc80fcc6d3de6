"""Linking cannot be hijacked: a link page needs a link token that only the browser itself can get
(its secret, the shop's origin), tokens are signed, single-use and short-lived, the code page does
no work for anyone without one, and no token, browser ID, code or state reaches the access log."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

from bot.__main__ import run_options
from bot.app import create_app
from bot.typedefs import DATABASE
from core.clock import FixedClock
from core.settings import Settings
from linking.chat_code import redeem_chat_code
from linking.links import LinkStatus
from tests.conftest import START, AppServer, ShopHandle
from tests.linking.conftest import (
    SHOP_ORIGIN,
    browser_id,
    event,
    line_user_id,
    link_token,
    post_events,
    request_link_token,
)

LINE_CALLS: web.AppKey[Counter[str]] = web.AppKey("line_calls", Counter)


@pytest.fixture
async def linesim_server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    """linesim, counting the calls it gets by path (to prove the code page does not call LINE per hit)."""
    from linesim.app import create_app as create_linesim

    app = create_linesim()
    app[LINE_CALLS] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        request.app[LINE_CALLS][request.path] += 1
        return await handler(request)

    app.middlewares.append(count)
    return await aiohttp_server(app)


async def chat_code_for(client: TestClient[Any, Any], shop_id: str, token: str) -> str:
    response = await client.get(f"/l/{shop_id}/code", params={"lt": token})
    page = await response.text()
    assert response.status == 200, page
    found = re.search(r'id="chat-code">([0-9A-Z]{4}-[0-9A-Z]{4})<', page)
    assert found is not None
    return found.group(1)


async def issued_links(client: TestClient[web.Request, web.Application]) -> int:
    return await client.app[DATABASE]["link_tokens"].count_documents({"kind": {"$in": ["chat_code", "login_state"]}})


async def test_knowing_a_browser_id_is_not_enough_to_link_it(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    victim = browser_id()
    await link_token(client, shop.shop_id, victim)  # the victim's script has presented its secret
    assert (await post_events(client, shop.shop_id, event(victim, product_id="p1"))).status == 204
    for path in (f"/l/{shop.shop_id}/code", f"/l/{shop.shop_id}"):
        page = await client.get(path, params={"bid": victim}, allow_redirects=False)
        assert page.status == 400, path
    stolen = await request_link_token(client, shop.shop_id, victim, secret="attacker-secret-0123456789")
    assert stolen.status == 403 and (await stolen.json())["error"]["code"] == "browser_claimed"
    assert await issued_links(client) == 0
    doc = await client.app[DATABASE]["browsers"].find_one({"shop_id": shop.shop_id, "browser_id": victim})
    assert doc["line_user_id"] is None


async def test_relinking_needs_the_browsers_proof_and_is_recorded(
    client: TestClient[Any, Any], shop: ShopHandle
) -> None:
    db = client.app[DATABASE]
    bid, first, second = browser_id(), line_user_id(), line_user_id()
    code = await chat_code_for(client, shop.shop_id, await link_token(client, shop.shop_id, bid))
    linked = await redeem_chat_code(db, shop.shop_id, code, first, START)
    assert linked is not None and linked.status is LinkStatus.LINKED
    # Someone else with only the ID: refused at every door.
    assert (await request_link_token(client, shop.shop_id, bid, secret="x" * 32)).status == 403
    # The browser itself (its secret) may move to another LINE account; the move is recorded.
    code = await chat_code_for(client, shop.shop_id, await link_token(client, shop.shop_id, bid))
    moved = await redeem_chat_code(db, shop.shop_id, code, second, START)
    assert moved is not None and moved.status is LinkStatus.MOVED
    doc = await db["browsers"].find_one({"shop_id": shop.shop_id, "browser_id": bid})
    assert doc["line_user_id"] == second
    assert [(h["line_user_id"], h["previous_line_user_id"]) for h in doc["link_history"]] == [
        (first, None), (second, first)]


async def test_link_tokens_are_single_use_signed_shop_bound_and_short_lived(
    client: TestClient[Any, Any], shop: ShopHandle, make_shop: Any, clock: FixedClock
) -> None:
    bid = browser_id()
    token = await link_token(client, shop.shop_id, bid)
    await chat_code_for(client, shop.shop_id, token)
    assert (await client.get(f"/l/{shop.shop_id}/code", params={"lt": token})).status == 400  # used
    fresh = await link_token(client, shop.shop_id, bid)
    expires, nonce, signature = fresh.split(".")
    for forged in (f"{int(expires) + 3600}.{nonce}.{signature}", f"{expires}.{nonce}x.{signature}",
                   f"{expires}.{nonce}.{signature[:-2]}AA", "1.2.3", "junk", "é" * 10):
        assert (await client.get(f"/l/{shop.shop_id}/code", params={"lt": forged})).status == 400, forged
    other = await make_shop()
    assert (await client.get(f"/l/{other.shop_id}/code", params={"lt": fresh})).status == 400
    clock.advance(timedelta(minutes=11))
    assert (await client.get(f"/l/{shop.shop_id}/code", params={"lt": fresh})).status == 400
    assert await issued_links(client) == 1


async def test_a_link_token_is_only_for_the_shops_own_pages(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    assert (await request_link_token(client, shop.shop_id, bid, origin=None)).status == 403
    evil = await request_link_token(client, shop.shop_id, bid, origin="https://evil.example")
    assert evil.status == 403 and "Access-Control-Allow-Origin" not in evil.headers
    good = await request_link_token(client, shop.shop_id, bid)
    assert good.status == 200 and good.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
    assert good.headers["Cache-Control"] == "no-store"
    assert (await request_link_token(client, "shp_0000000000000000", bid)).status == 404
    bad = await client.post(f"/t/{shop.shop_id}/link-token", data=b'{"browser_id": 1}',
                            headers={"Origin": SHOP_ORIGIN})
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "browser_id"


async def test_the_code_page_writes_nothing_and_calls_line_once_per_shop(
    client: TestClient[Any, Any], shop: ShopHandle, linesim_server: TestServer
) -> None:
    calls = linesim_server.app[LINE_CALLS]
    for params in ({}, {"bid": browser_id()}, {"lt": "1.2.3"}, {"lt": "9999999999.abc.def"}) * 5:
        page = await client.get(f"/l/{shop.shop_id}/code", params=params, allow_redirects=False)
        assert page.status == 400
    assert await client.app[DATABASE]["link_tokens"].count_documents({}) == 0
    assert calls["/v2/bot/info"] == 0
    for _ in range(3):
        await chat_code_for(client, shop.shop_id, await link_token(client, shop.shop_id, browser_id()))
    assert calls["/v2/bot/info"] == 1  # the bot's basic ID is cached


async def test_the_access_log_names_routes_never_tokens_or_ids(
    aiohttp_client: Any, settings: Settings, clock: FixedClock, make_shop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    options = {name: value for name, value in run_options().items() if name.startswith("access_log")}
    server = AppServer(create_app(settings, clock=clock))
    await server.start_server(**options)  # the runner takes the access log options here
    logged = await aiohttp_client(server)
    created = await logged.post("/admin/api/v1/shops", json={"name": "s", "channel_secret": "c" * 32,
                                                             "channel_access_token": "t"},
                                headers={"Authorization": "Bearer operator-test-token"})
    shop = await created.json()
    await logged.put(f"/admin/api/v1/shops/{shop['shop_id']}/settings/tracking",
                     json={"allowed_origins": [SHOP_ORIGIN]}, headers={"Authorization": f"Bearer {shop['api_key']}"})
    bid = browser_id()
    with caplog.at_level(logging.INFO, logger="linecrm.access"):
        token = await link_token(logged, shop["shop_id"], bid)
        await logged.get(f"/l/{shop['shop_id']}/code", params={"lt": token, "return": SHOP_ORIGIN + "/x"})
        await logged.get(f"/l/{shop['shop_id']}/callback", params={"code": "oauth-code-123", "state": "state-456"})
        await logged.get(f"/l/{shop['shop_id']}", params={"bid": bid})
        await logged.get("/r/some-click-token")
        await asyncio.sleep(0.1)  # the server logs once the response is out
    lines = [record.getMessage() for record in caplog.records if record.name == "linecrm.access"]
    assert any("/l/{shop_id}/code" in line for line in lines), lines
    text = "\n".join(lines)
    for secret in (token, bid, "oauth-code-123", "state-456", "some-click-token", shop["shop_id"]):
        assert secret not in text
