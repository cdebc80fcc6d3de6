"""The tracking script is served small, cacheable and revalidatable."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient


async def test_script_is_cacheable(client: TestClient[Any, Any]) -> None:
    response = await client.get("/t/track.js")
    body = await response.read()
    assert response.status == 200 and response.content_type == "application/javascript"
    assert "max-age=86400" in response.headers["Cache-Control"] and "public" in response.headers["Cache-Control"]
    assert b"sendBeacon" in body and b"SameSite=Lax" in body and len(body) < 12_000
    again = await client.get("/t/track.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""
