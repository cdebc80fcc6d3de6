"""HTML pages of the linking flows (Jinja2, autoescaped) and the return-URL rule.

Pages never leak the flow's secrets onward: no caching, no Referer.
A return URL is followed only to one of the shop's configured origins, so our
pages can never be used as an open redirect.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


def render(name: str, status: int = 200, **context: object) -> web.Response:
    body = _env.get_template(name).render(**context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


def error_page(status: int, title: str, message: str, return_url: str | None = None) -> web.Response:
    return render("error.html", status, title=title, message=message, return_url=return_url)


def _origin(scheme: str, host: str, port: int | None) -> str:
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def safe_return_url(url: str | None, allowed_origins: list[str]) -> str | None:
    """The URL if it is an http(s) URL on one of the shop's origins, else None."""
    if not url or len(url) > 2048 or any(ch in url for ch in "\\\r\n\t ") or not url.isprintable():
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    origin = _origin(parts.scheme, parts.hostname.lower(), port)
    for allowed in allowed_origins:
        try:
            a = urlsplit(allowed)
            if a.hostname and _origin(a.scheme.lower(), a.hostname.lower(), a.port) == origin:
                return url
        except (ValueError, KeyError):
            continue
    return None
