"""Message bodies and images shared by the linesim tests (taken from the shapes
in LINE's OpenAPI document)."""

from __future__ import annotations

import struct
import zlib
from typing import Any

TOKEN = "test-channel-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USER = "U" + "1" * 32
USER2 = "U" + "2" * 32


class FakeClock:
    """Injected clock so tests can move time (reply tokens, windows, retention)."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def text(t: str = "hello") -> dict[str, Any]:
    return {"type": "text", "text": t}


def bubble(title: str = "Item") -> dict[str, Any]:
    return {
        "type": "bubble",
        "hero": {"type": "image", "url": "https://example.com/p.jpg", "size": "full",
                 "aspectRatio": "20:13", "aspectMode": "cover"},
        "body": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": [
            {"type": "text", "text": title, "weight": "bold", "size": "xl", "wrap": True},
            {"type": "box", "layout": "baseline", "contents": [
                {"type": "text", "text": "¥1,200", "flex": 0, "color": "#999999"},
                {"type": "filler"}]},
            {"type": "separator", "margin": "md"}]},
        "footer": {"type": "box", "layout": "vertical", "contents": [
            {"type": "button", "style": "primary", "action":
                {"type": "uri", "label": "Buy", "uri": "https://example.com/p"}},
            {"type": "button", "action":
                {"type": "postback", "label": "Later", "data": "action=later&p=1"}}]},
    }


def flex(contents: dict[str, Any], alt: str = "New items") -> dict[str, Any]:
    return {"type": "flex", "altText": alt, "contents": contents}


def carousel(n: int) -> dict[str, Any]:
    return {"type": "carousel", "contents": [bubble(f"Item {i}") for i in range(n)]}


def png(width: int, height: int) -> bytes:
    """A minimal PNG (signature + IHDR + empty IDAT + IEND): enough for header checks."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def jpeg(width: int, height: int) -> bytes:
    """JPEG header bytes: SOI, APP0 (JFIF), SOF0 with the dimensions, EOI."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def rich_menu(width: int = 2500, height: int = 843) -> dict[str, Any]:
    return {
        "size": {"width": width, "height": height}, "selected": True, "name": "main",
        "chatBarText": "Menu",
        "areas": [
            {"bounds": {"x": 0, "y": 0, "width": width // 2, "height": height},
             "action": {"type": "uri", "label": "Shop", "uri": "https://example.com"}},
            {"bounds": {"x": width // 2, "y": 0, "width": width // 2, "height": height},
             "action": {"type": "postback", "label": "Points", "data": "action=points"}},
        ],
    }


async def start_bot(aiohttp_server: Any, status: int = 200) -> tuple[str, list[tuple[bytes, dict[str, str]]]]:
    """A stand-in bot webhook endpoint recording (raw body, headers) of each call."""
    from aiohttp import web

    received: list[tuple[bytes, dict[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.json_response({"ok": True}, status=status)

    app = web.Application()
    app.router.add_post("/webhook", handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/webhook")), received
