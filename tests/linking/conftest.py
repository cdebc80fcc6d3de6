"""Fixtures for the linking tests: a shop with a LINE Login channel and an allowed origin,
linesim taught that login channel, and small builders for events."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from linking.tracking import events_applied
from storage.tracking_batches import TrackingBatchRepository
from tests.conftest import START, ShopHandle

SHOP_ORIGIN = "https://shop.example"
LOGIN_CHANNEL_ID = "1650000001"


def browser_id() -> str:
    return secrets.token_urlsafe(16)


def line_user_id() -> str:
    return "U" + secrets.token_hex(16)


def event(bid: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": secrets.token_urlsafe(16),
        "browser_id": bid,
        "type": "page_view",
        "url": f"{SHOP_ORIGIN}/products/p1",
        **fields,
    }


async def post_events(
    client: TestClient[Any, Any], shop_id: str, body: Any, origin: str | None = SHOP_ORIGIN
) -> aiohttp.ClientResponse:
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    if origin is not None:
        headers["Origin"] = origin
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    response = await client.post(f"/t/{shop_id}/events", data=data, headers=headers)
    await events_applied(client.app)  # the counters and signals follow the 204: let them land before asserting
    return response


async def stored_events(client: TestClient[Any, Any], shop_id: str, **fields: Any) -> list[dict[str, Any]]:
    """The shop's stored browser events (with their batch's state) that have every one of `fields`."""
    events = await TrackingBatchRepository(client.app[DATABASE]).events(shop_id)
    return [stored for stored in events if all(stored.get(name) == value for name, value in fields.items())]


def browser_secret(bid: str) -> str:
    """The secret the tracking script keeps beside a browser ID (here derived, so tests can re-derive it)."""
    return hashlib.sha256(f"secret-of-{bid}".encode()).hexdigest()[:32]


async def request_link_token(
    client: TestClient[Any, Any], shop_id: str, bid: str, secret: str | None = None, origin: str | None = SHOP_ORIGIN
) -> aiohttp.ClientResponse:
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    if origin is not None:
        headers["Origin"] = origin
    body = {"browser_id": bid, "browser_secret": secret or browser_secret(bid)}
    return await client.post(f"/t/{shop_id}/link-token", data=json.dumps(body), headers=headers)


async def link_token(client: TestClient[Any, Any], shop_id: str, bid: str, secret: str | None = None) -> str:
    """What the tracking script does before opening a link page: trade the browser's secret for a token."""
    response = await request_link_token(client, shop_id, bid, secret)
    assert response.status == 200, await response.text()
    return str((await response.json())["link_token"])


async def sim_call(linesim_url: str, method: str, path: str, body: Any) -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, linesim_url + path, json=body) as response:
        assert response.status < 300, await response.text()
        return await response.json()


@pytest.fixture
async def shop(
    client: TestClient[Any, Any], make_shop: Callable[..., Awaitable[ShopHandle]], linesim_url: str
) -> ShopHandle:
    """A shop with a LINE Login channel (known to linesim) whose pages live on SHOP_ORIGIN."""
    secret = secrets.token_hex(16)
    handle = await make_shop(line_login_channel_id=LOGIN_CHANNEL_ID, line_login_channel_secret=secret)
    handle.login_secret = secret  # type: ignore[attr-defined]
    response = await client.put(
        f"/admin/api/v1/shops/{handle.shop_id}/settings/tracking",
        json={"allowed_origins": [SHOP_ORIGIN]}, headers=handle.auth,
    )
    assert response.status == 200, await response.text()
    await sim_call(linesim_url, "POST", "/_sim/login_channels",
                   {"channel_id": LOGIN_CHANNEL_ID, "channel_secret": secret})
    await sim_call(linesim_url, "PUT", "/_sim/login/clock", {"now": START.isoformat()})
    return handle
