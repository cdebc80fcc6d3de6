"""THE way a storage `_id` is built from several IDs (tenant-scoped keys).

A key is its parts joined by ":". Every part but the last is escaped
(`%` -> `%25`, `:` -> `%3A`), so a key splits back into its parts in exactly
one way and two different tuples never share a key: `("s", "VV1", "p:q")` is
`s:VV1:p:q` while `("s", "VV1:p", "q")` is `s:VV1%3Ap:q`.

Why only the non-final parts: the last part may contain anything without
ambiguity (everything after the last separator of the escaped prefix), and
keys whose leading parts hold no ":" or "%" - every key whose only leading part
is a shop ID (`shp_` + hex) - keep the format written before this module, so
existing data stays readable. The one stored key that did change (product views
of a browser ID holding ":" or "%") is migrated by `storage.migrations`.

Never build a multi-part `_id` with an f-string anywhere else.
"""

from __future__ import annotations

SEPARATOR = ":"


def escape_part(part: str) -> str:
    """One leading part, made free of the separator (reversible)."""
    return part.replace("%", "%25").replace(SEPARATOR, "%3A")


def unescape_part(part: str) -> str:
    return part.replace("%3A", SEPARATOR).replace("%25", "%")


def compose(*parts: str) -> str:
    """The key of these parts, in order (at least one)."""
    if not parts:
        raise ValueError("a key needs at least one part")
    *leading, last = parts
    return SEPARATOR.join([*(escape_part(part) for part in leading), last])


def split(key: str, count: int) -> tuple[str, ...]:
    """The `count` parts a key was composed of (the inverse of `compose`)."""
    pieces = key.split(SEPARATOR, count - 1)
    if len(pieces) != count:
        raise ValueError(f"key does not have {count} parts")
    return (*(unescape_part(piece) for piece in pieces[:-1]), pieces[-1])


# The keys of the collections, one function per kind, so a reader finds every format here.

def shop_scoped(shop_id: str, item_id: str) -> str:
    """Anything owned by one shop and named by one ID: customers, browsers, products, orders, events…"""
    return compose(shop_id, item_id)


def browser_key(shop_id: str, browser_id: str) -> str:
    return compose(shop_id, browser_id)


def customer_key(shop_id: str, line_user_id: str) -> str:
    return compose(shop_id, line_user_id)


def view_key(shop_id: str, browser_id: str, product_id: str) -> str:
    """`product_views`: one browser's views of one product."""
    return compose(shop_id, browser_id, product_id)


def settings_key(shop_id: str, section: str) -> str:
    """`shop_settings`: one section of one shop's settings."""
    return compose(shop_id, section)
