"""The per-customer reminder profile as plain data: viewed products and products bought, kept at ingest.

The engine must not scan raw events at send time (a secondary-index `$in` costs
~25 ms per value on the embedded database), so the listeners in `state` keep one
`reminder_profiles` document per customer and the batch reads it by `_id`.
These functions decide what that document holds; they never do I/O.

Profile document (`reminder_profiles`, `_id` = customer key "<shop_id>:<line_user_id>"):
  shop_id, line_user_id,
  views: {<field key of product_id>: {c: count, f: first_viewed_at, l: last_viewed_at}}
         (summed over all the customer's browsers; at most VIEWS_KEEP entries, the top by count then recency),
  bought: {<field key of product_id>: last paid ordered_at},
  updated_at.
Product IDs may contain "." (and, from tracking, "$"), which MongoDB field names
cannot, so map keys are escaped with `field_key` and read back with `product_of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from core.clock import as_utc
from flows.reminders.choice import ViewStat

VIEWS_KEEP = 50  # the choice shows at most 5 viewed products; 50 leaves room for exclusions


def field_key(product_id: str) -> str:
    """A product ID usable as a field name (reversible: `product_of`)."""
    return product_id.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def product_of(key: str) -> str:
    return unquote(key)


def view_entry(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One product's `product_views` rows (one per browser) → the profile entry, or None without views."""
    count, first, last = 0, None, None
    for row in rows:
        count += int(row.get("count") or 0)
        f = row.get("first_viewed_at") or row.get("last_viewed_at")
        l = row.get("last_viewed_at") or f
        if f is not None:
            first = as_utc(f) if first is None else min(first, as_utc(f))
        if l is not None:
            last = as_utc(l) if last is None else max(last, as_utc(l))
    if count <= 0 or first is None or last is None:
        return None
    return {"c": count, "f": first, "l": last}


def views_from_rows(rows: Iterable[Mapping[str, Any]], keep: int = VIEWS_KEEP) -> dict[str, dict[str, Any]]:
    """All of a customer's `product_views` rows → the bounded `views` map (keys escaped)."""
    by_product: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_product.setdefault(row["product_id"], []).append(row)
    entries = {field_key(pid): entry for pid, group in by_product.items() if (entry := view_entry(group))}
    kept = ranked(entries)[:keep]
    return {key: entries[key] for key in kept}


def ranked(views: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Map keys best first: most views, then most recent view (the order the choice shows them in)."""
    return sorted(views, key=lambda k: (-int(views[k]["c"]), -as_utc(views[k]["l"]).timestamp(), k))


def trim(views: Mapping[str, Mapping[str, Any]], keep: int = VIEWS_KEEP) -> list[str]:
    """The keys that fall out when the map is bounded to `keep` entries."""
    return ranked(views)[keep:]


def view_stats(profile: Mapping[str, Any] | None) -> list[ViewStat]:
    """The profile's views as the choice wants them."""
    views = (profile or {}).get("views") or {}
    return [ViewStat(product_of(key), int(entry["c"]), as_utc(entry["l"])) for key, entry in views.items()]


def bought_products(profile: Mapping[str, Any] | None) -> dict[str, datetime]:
    """product_id → the latest paid order containing it."""
    bought = (profile or {}).get("bought") or {}
    return {product_of(key): as_utc(at) for key, at in bought.items() if at is not None}


def paid_items(order: Mapping[str, Any] | None) -> tuple[str | None, dict[str, datetime]]:
    """(LINE user, product_id → ordered_at) an order contributes to `bought`; nothing unless paid."""
    if order is None or order.get("status") != "paid" or not order.get("line_user_id"):
        return None, {}
    at = order.get("ordered_at") or order.get("created_at")
    if at is None:
        return None, {}
    return order["line_user_id"], {item["product_id"]: as_utc(at) for item in order.get("items") or ()
                                   if item.get("product_id")}
