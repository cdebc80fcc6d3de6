"""Customer search by cart state (the seed's カゴ落ち状態 / カゴ落ち日時 / カゴ落ち金額): carts with their customers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.carts import CartRepository, CartSearch
from storage.database import Database, Document, find_by_ids
from storage.keys import customer_key


async def search_carts(database: Database, shop_id: str, search: CartSearch, after: tuple[datetime, str] | None,
                       limit: int, now: datetime) -> list[Document]:
    """A page of carts (newest activity first), each with its customer's display name when it has an owner."""
    carts = await CartRepository(database).search(shop_id, search, after, limit, now)
    owners = sorted({str(c["line_user_id"]) for c in carts if c.get("line_user_id")})
    names: dict[str, Any] = {}
    if owners:
        found = await find_by_ids(database["customers"], [customer_key(shop_id, u) for u in owners],
                                  {"line_user_id": 1, "display_name": 1})
        names = {doc["line_user_id"]: doc.get("display_name") for doc in found}
    return [{**cart, "display_name": names.get(cart.get("line_user_id") or "")} for cart in carts]
