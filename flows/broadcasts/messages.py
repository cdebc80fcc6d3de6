"""A broadcast's messages as they go out: every web link through our click redirect. Pure.

A multicast sends one body to up to 500 people, so a click names the broadcast (its delivery key), not the
customer; `delivery.clicks` signs it. Links that are not http(s), and links whose redirect URL would pass
LINE's 1,000-character limit on a URI, are left as they are (not counted rather than refused).
"""

from __future__ import annotations

import copy
from typing import Any

from delivery.clicks import Click, click_url

MAX_URI = 1000


def _is_web(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(("https://", "http://"))


def _rewrite(node: Any, wrap: Any) -> None:
    if isinstance(node, dict):
        kind = node.get("type")
        for name in ("uri", "linkUri"):
            if kind == "uri" and _is_web(node.get(name)):
                node[name] = wrap(node[name])
        for value in node.values():
            _rewrite(value, wrap)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value, wrap)


def with_click_links(messages: list[dict[str, Any]], public_base: str, secret: bytes, shop_id: str, flow: str,
                     key: str) -> list[dict[str, Any]]:
    """A copy of `messages` whose web links (URI actions, imagemap links) go through `/r/…`."""

    def wrap(url: str) -> str:
        redirect = click_url(public_base, secret, Click(shop_id, flow, None, key, f"u:{url}"))
        return redirect if len(redirect) <= MAX_URI else url

    out = copy.deepcopy(messages)
    _rewrite(out, wrap)
    return out
