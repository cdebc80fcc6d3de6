"""Customers: the LINE users of one shop, and the flags that decide whether we may message them.

Document (`customers`, `_id` = "<shop_id>:<line_user_id>"):
  shop_id, line_user_id, display_name, picture_url, language, status_message,
  friend (bool), blocked (bool), is_unblocked (bool | None, from the last follow),
  followed_at, unfollowed_at, opted_out (bool), opted_out_at,
  shop_customer_id (str | None), email (str | None), tags ([str]),
  linked (bool: at least one browser points here), browser_ids ([str]),
  totals: {purchase_count, total_spend, first_seen_at, last_purchase_at},
  points: {balance, ...} (owned by storage.points),
  reminder: {...} (owned by the reminder engine),
  created_at, updated_at.

A customer may exist before they follow (an order or a link import names them);
`friend` is then False. Never push unless friend and not blocked and not opted out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from storage.database import Database, Document


def customer_key(shop_id: str, line_user_id: str) -> str:
    return f"{shop_id}:{line_user_id}"


def new_customer_fields(shop_id: str, line_user_id: str, now: datetime) -> dict[str, Any]:
    """Fields a customer document gets when it is first created (for `$setOnInsert`)."""
    return {
        "shop_id": shop_id,
        "line_user_id": line_user_id,
        "friend": False,
        "blocked": False,
        "opted_out": False,
        "tags": [],
        "linked": False,
        "browser_ids": [],
        "totals": {"purchase_count": 0, "total_spend": 0, "first_seen_at": now, "last_purchase_at": None},
        "created_at": now,
    }


def is_reachable(customer: Document) -> bool:
    """May we push marketing messages to this customer at all?"""
    return bool(customer.get("friend")) and not customer.get("blocked") and not customer.get("opted_out")


class CustomerRepository:
    def __init__(self, database: Database) -> None:
        self._customers = database["customers"]

    async def get(self, shop_id: str, line_user_id: str) -> Document | None:
        return await self._customers.find_one({"_id": customer_key(shop_id, line_user_id)})

    async def ensure(self, shop_id: str, line_user_id: str, now: datetime) -> None:
        """Make sure the customer exists (idempotent), without changing an existing one."""
        await self._customers.update_one(
            {"_id": customer_key(shop_id, line_user_id)},
            {"$setOnInsert": new_customer_fields(shop_id, line_user_id, now)},
            upsert=True,
        )

    async def record_follow(
        self, shop_id: str, line_user_id: str, profile: dict[str, Any] | None, is_unblocked: bool | None, now: datetime
    ) -> Document:
        """A follow (new friend or unblock): friend again, not blocked; refresh the profile we got."""
        fields: dict[str, Any] = {
            "friend": True,
            "blocked": False,
            "is_unblocked": is_unblocked,
            "followed_at": now,
            "updated_at": now,
        }
        if profile:
            for ours, theirs in (
                ("display_name", "displayName"),
                ("picture_url", "pictureUrl"),
                ("language", "language"),
                ("status_message", "statusMessage"),
            ):
                if profile.get(theirs) is not None:
                    fields[ours] = profile[theirs]
        insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id, now).items() if k not in fields}
        doc = await self._customers.find_one_and_update(
            {"_id": customer_key(shop_id, line_user_id)},
            {"$set": fields, "$setOnInsert": insert},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return doc

    async def record_unfollow(self, shop_id: str, line_user_id: str, now: datetime) -> None:
        """The user blocked the account: never push to them until they follow again."""
        insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id, now).items() if k not in ("friend", "blocked")}
        await self._customers.update_one(
            {"_id": customer_key(shop_id, line_user_id)},
            {"$set": {"friend": False, "blocked": True, "unfollowed_at": now, "updated_at": now}, "$setOnInsert": insert},
            upsert=True,
        )

    async def set_opted_out(self, shop_id: str, line_user_id: str, opted_out: bool, now: datetime) -> None:
        """配信停止 / 配信再開: marketing pushes stop or resume; replies to the customer still work."""
        insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id, now).items() if k != "opted_out"}
        await self._customers.update_one(
            {"_id": customer_key(shop_id, line_user_id)},
            {"$set": {"opted_out": opted_out, "opted_out_at": now if opted_out else None, "updated_at": now},
             "$setOnInsert": insert},
            upsert=True,
        )
