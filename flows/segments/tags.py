"""Tag rules a merchant can switch on (`PUT /settings/tags`), as ingest listeners.

- `purchase-count:N`: kept equal to the customer's paid purchase count whenever an order is recorded (the
  subscription apps' 購入回数 tag); the previous count's tag goes.
- `<x>-resume` clears `<x>-pause`: when a subscription app adds a resume tag (`subscription-123-resume`,
  or `subscription-123-resume:2037-12-01`), the matching pause tags (`subscription-123-pause`,
  `subscription-123-pause:…`) are removed (一時停止 → 再開時に自動削除).

Both write through `CustomerRepository.bulk_tags`, so every change they make is a `tags_changed` signal like
a merchant's own (step sequences' `tag_added` trigger hears them). Idempotent: each recomputes from the
customer's current tags and totals, and writes nothing when nothing changes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import Any

from storage.customers import CustomerRepository
from storage.database import Database, find_by_ids
from storage.keys import customer_key
from storage.shop_settings import ShopSettingsRepository, TagRules

RESUME = re.compile(r"^(?P<base>.+)-resume(?::.*)?$")


def purchase_count_change(tags: list[str], count: int, prefix: str) -> tuple[list[str], list[str]]:
    """(add, remove) that leave exactly `<prefix><count>` (none when there is no purchase). Pure."""
    want = f"{prefix}{count}" if count > 0 else None
    remove = sorted(t for t in tags if t.startswith(prefix) and t != want)
    add = [want] if want is not None and want not in tags else []
    return add, remove


def pause_tags_cleared(tags: list[str], added: list[str]) -> list[str]:
    """The pause tags a set of added resume tags clears from a customer's tags. Pure."""
    bases = {m.group("base") for tag in added if (m := RESUME.match(tag))}
    return sorted(t for t in tags for base in bases if t == f"{base}-pause" or t.startswith(f"{base}-pause:"))


async def on_order_recorded(database: Database, order: dict[str, Any], previous: dict[str, Any] | None,
                            now: datetime) -> None:
    users = {u for u in ((order or {}).get("line_user_id"), (previous or {}).get("line_user_id")) if u}
    if not users:
        return
    shop_id = str(order["shop_id"])
    rules = await ShopSettingsRepository(database).get(shop_id, TagRules)
    if not rules.purchase_count_tag:
        return
    customers = CustomerRepository(database)
    for user in sorted(users):
        doc = await customers.get(shop_id, user) or {}
        count = int((doc.get("totals") or {}).get("purchase_count") or 0)
        add, remove = purchase_count_change(list(doc.get("tags") or []), count, rules.purchase_count_prefix)
        if add or remove:
            await customers.bulk_tags(shop_id, [user], add, remove, {}, now)


async def on_tags_changed(database: Database, shop_id: str, line_user_ids: list[str], added: list[str],
                          removed: list[str], now: datetime) -> None:
    if not any(RESUME.match(tag) for tag in added):
        return
    rules = await ShopSettingsRepository(database).get(shop_id, TagRules)
    if not rules.resume_clears_pause:
        return
    docs = await find_by_ids(database["customers"], [customer_key(shop_id, u) for u in line_user_ids],
                             {"line_user_id": 1, "tags": 1})
    by_removal: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for doc in docs:
        cleared = pause_tags_cleared(list(doc.get("tags") or []), added)
        if cleared:
            by_removal[tuple(cleared)].append(str(doc["line_user_id"]))
    customers = CustomerRepository(database)
    for cleared_tags, users in sorted(by_removal.items()):
        await customers.bulk_tags(shop_id, sorted(users), [], list(cleared_tags), {}, now)
