"""HTML of the dashboard: Jinja2 templates beside this module (autoescaped), formatting filters, page headers.

Pages run no script at all (`script-src 'none'`): charts are SVG drawn on the
server, forms are plain forms. Styles come from our stylesheet, plus inline
styles only where a LINE message preview must show the merchant's colours.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from dashboard import labels

HERE = Path(__file__).resolve().parent
CSS = (HERE / "static" / "dashboard.css").read_bytes()

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'none'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; "
                                "base-uri 'none'"),
}


def number(value: Any) -> str:
    return f"{int(value or 0):,}"


def yen(value: Any) -> str:
    return f"¥{int(value or 0):,}"


def percent(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{float(value) * 100:.{digits}f}%"


def points_diff(value: Any) -> str:
    """A difference of two rates, in percentage points with a sign."""
    return "—" if value is None else f"{float(value) * 100:+.1f}pt"


def local_time(value: Any, timezone: str = "Asia/Tokyo") -> str:
    if not value:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return str(moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M"))


_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.filters.update(number=number, yen=yen, percent=percent, points_diff=points_diff, local_time=local_time,
                    reason=labels.reason, status=labels.status)


def render(name: str, status: int = 200, **context: Any) -> web.Response:
    body = _env.get_template(name).render(**context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(body=CSS, content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})
