"""Orders by the shop's order ID, and the aggregates they keep current.

Document (`orders`, `_id` = "<shop_id>:<order_id>"): shop_id, order_id,
line_user_id (resolved at ingest: given, else the browser's link, else the
customer with that shop_customer_id, else the customer with that e-mail),
customer_id, browser_id, email, items[{product_id, variant_id, quantity, price}],
total, status (paid | cancelled | refunded), ordered_at, cart_token, created_at,
updated_at.

A paid order counts towards `customers.totals` (purchase_count, total_spend,
last_purchase_at) and `products.sold_count`. Every write applies the
*difference* between the order's new and previous contribution inside one
transaction with the order itself, so a replay changes nothing, paid→refunded
reverses exactly once, and a crash never leaves the totals half-applied.
An order whose customer cannot be resolved is stored but counts for nobody.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from storage import signals
from storage.customers import customer_key, new_customer_fields
from storage.database import Database, Document, IndexSpec, register_indexes
from storage.products import ProductRepository

# Time fields are indexed ascending even though we read newest first: SecantusDB 0.7 answers a
# one-sided `$gte` over a descending index key with nothing (found while testing this module).
register_indexes(
    [
        IndexSpec("orders", [("shop_id", ASCENDING), ("ordered_at", ASCENDING), ("_id", ASCENDING)], "shop_ordered"),
        IndexSpec(
            "orders",
            [("shop_id", ASCENDING), ("line_user_id", ASCENDING), ("ordered_at", ASCENDING), ("_id", ASCENDING)],
            "shop_user_ordered",
        ),
        IndexSpec(
            "orders",
            [("shop_id", ASCENDING), ("status", ASCENDING), ("ordered_at", ASCENDING), ("_id", ASCENDING)],
            "shop_status_ordered",
        ),
        IndexSpec("customers", [("shop_id", ASCENDING), ("email", ASCENDING)], "shop_email"),
    ]
)

MATERIAL_FIELDS = ("line_user_id", "customer_id", "browser_id", "email", "items", "total", "status", "ordered_at", "cart_token")
Outcome = Literal["created", "updated", "unchanged"]


def order_key(shop_id: str, order_id: str) -> str:
    return f"{shop_id}:{order_id}"


@dataclass(frozen=True)
class Contribution:
    """What one order adds to the aggregates: nothing unless it is paid and has a customer."""

    line_user_id: str | None
    purchases: int
    spend: int
    quantities: Counter[str]


def contribution(order: Mapping[str, Any] | None) -> Contribution:
    if order is None or order.get("status") != "paid":
        return Contribution(None, 0, 0, Counter())
    quantities: Counter[str] = Counter()
    for item in order.get("items", []):
        quantities[item["product_id"]] += int(item["quantity"])
    return Contribution(order.get("line_user_id"), 1, int(order.get("total", 0)), quantities)


def customer_deltas(new: Contribution, old: Contribution) -> dict[str, tuple[int, int]]:
    """(purchases, spend) change per LINE user; a user change moves the order between customers."""
    deltas: dict[str, tuple[int, int]] = {}
    for sign, part in ((1, new), (-1, old)):
        if part.line_user_id is not None and part.purchases:
            count, spend = deltas.get(part.line_user_id, (0, 0))
            deltas[part.line_user_id] = (count + sign * part.purchases, spend + sign * part.spend)
    return {user: delta for user, delta in deltas.items() if delta != (0, 0)}


def quantity_deltas(new: Contribution, old: Contribution) -> dict[str, int]:
    keys = set(new.quantities) | set(old.quantities)
    return {key: new.quantities[key] - old.quantities[key] for key in keys if new.quantities[key] != old.quantities[key]}


def is_same(stored: Mapping[str, Any], incoming: Mapping[str, Any]) -> bool:
    return all(stored.get(field) == incoming.get(field) for field in MATERIAL_FIELDS)


@dataclass(frozen=True)
class Recorded:
    outcome: Outcome
    order: Document
    previous: Document | None


def encode_cursor(at: datetime, key: str) -> str:
    return f"{at.isoformat()}|{key}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError when the cursor is not one of ours."""
    at, sep, key = cursor.partition("|")
    if not sep or not key:
        raise ValueError("malformed cursor")
    parsed = datetime.fromisoformat(at)
    if parsed.tzinfo is None:
        raise ValueError("malformed cursor")
    return parsed, key


async def newest_first_page(
    collection: Any, query: dict[str, Any], time_field: str, after: str | None, limit: int
) -> list[Document]:
    """Keyset paging by (time desc, _id desc) as two indexed range scans (the engine cannot index `$or`)."""
    if after is None:
        cursor = collection.find(query).sort([(time_field, DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [doc async for doc in cursor]
    at, key = decode_cursor(after)
    ties = collection.find({**query, time_field: at, "_id": {"$lt": key}}).sort("_id", DESCENDING).limit(limit)
    page = [doc async for doc in ties]
    if len(page) < limit:
        older = collection.find({**query, time_field: {"$lt": at}}).sort([(time_field, DESCENDING), ("_id", DESCENDING)])
        page += [doc async for doc in older.limit(limit - len(page))]
    return page


class OrderRepository:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._orders = database["orders"]
        self._customers = database["customers"]

    async def resolve_line_user(
        self, shop_id: str, *, line_user_id: str | None, browser_id: str | None, customer_id: str | None, email: str | None
    ) -> str | None:
        """Who placed the order, from whichever identity the shop knows (strongest first)."""
        if line_user_id:
            return line_user_id
        if browser_id:
            browser = await self._database["browsers"].find_one(
                {"_id": f"{shop_id}:{browser_id}"}, projection={"line_user_id": 1}
            )
            if browser and browser.get("line_user_id"):
                return str(browser["line_user_id"])
        for field, value in (("shop_customer_id", customer_id), ("email", email)):
            if value:
                found = await self._customers.find_one({"shop_id": shop_id, field: value}, projection={"line_user_id": 1})
                if found:
                    return str(found["line_user_id"])
        return None

    async def record(self, shop_id: str, order_id: str, fields: dict[str, Any], now: datetime) -> Recorded:
        """Store the order idempotently and keep the aggregates in step; then tell the listeners."""
        try:
            recorded = await self._record_once(shop_id, order_id, fields, now)
        except DuplicateKeyError:  # a concurrent first post of the same order won; we are now an update
            recorded = await self._record_once(shop_id, order_id, fields, now)
        line_user_id = recorded.order.get("line_user_id")
        if line_user_id and recorded.order.get("status") != "paid":
            await self.ensure_customer(shop_id, line_user_id, now)
        if recorded.outcome != "unchanged":
            await signals.order_recorded.send(self._database, recorded.order, recorded.previous, now)
        return recorded

    async def _record_once(self, shop_id: str, order_id: str, fields: dict[str, Any], now: datetime) -> Recorded:
        async def apply(session: AsyncClientSession) -> Recorded:
            key = order_key(shop_id, order_id)
            previous = await self._orders.find_one({"_id": key}, session=session)
            incoming = dict(fields)
            if incoming.get("ordered_at") is None:
                incoming["ordered_at"] = previous["ordered_at"] if previous else now
            if previous is not None and is_same(previous, incoming):
                return Recorded("unchanged", previous, previous)
            if previous is None:
                order = {"_id": key, "shop_id": shop_id, "order_id": order_id, **incoming, "created_at": now, "updated_at": now}
                await self._orders.insert_one(order, session=session)
            else:
                order = {**previous, **incoming, "updated_at": now}
                await self._orders.replace_one({"_id": key}, order, session=session)
            paid_at = order["ordered_at"] if order.get("status") == "paid" else None
            await self._apply_aggregates(shop_id, contribution(order), contribution(previous), paid_at, now, session)
            return Recorded("created" if previous is None else "updated", order, previous)

        async with self._database.client.start_session() as session:
            return await session.with_transaction(apply)

    async def _apply_aggregates(
        self, shop_id: str, new: Contribution, old: Contribution, last_paid_at: datetime | None, now: datetime,
        session: AsyncClientSession,
    ) -> None:
        for line_user_id, (count, spend) in customer_deltas(new, old).items():
            insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id, now).items() if k != "totals"}
            update: dict[str, Any] = {
                "$inc": {"totals.purchase_count": count, "totals.total_spend": spend},
                "$set": {"updated_at": now},
                "$setOnInsert": {**insert, "totals.first_seen_at": now},
            }
            if count > 0 and last_paid_at is not None:
                update["$max"] = {"totals.last_purchase_at": last_paid_at}
            else:  # a purchase was taken back: the latest remaining one (this customer's orders only)
                latest = await self._orders.find_one(
                    {"shop_id": shop_id, "line_user_id": line_user_id, "status": "paid"},
                    sort=[("ordered_at", DESCENDING), ("_id", DESCENDING)],
                    projection={"ordered_at": 1},
                    hint="shop_user_ordered",
                    session=session,
                )
                update["$set"]["totals.last_purchase_at"] = latest["ordered_at"] if latest else None
            await self._customers.update_one(
                {"_id": customer_key(shop_id, line_user_id)}, update, upsert=True, session=session
            )
        await ProductRepository(self._database).add_sold(shop_id, quantity_deltas(new, old), session=session)

    async def ensure_customer(self, shop_id: str, line_user_id: str, now: datetime) -> None:
        """An order that names a LINE user makes that customer exist (not yet a friend)."""
        await self._customers.update_one(
            {"_id": customer_key(shop_id, line_user_id)},
            {"$setOnInsert": new_customer_fields(shop_id, line_user_id, now)},
            upsert=True,
        )

    async def get(self, shop_id: str, order_id: str) -> Document | None:
        return await self._orders.find_one({"_id": order_key(shop_id, order_id)})

    async def list(
        self, shop_id: str, *, line_user_id: str | None = None, status: str | None = None, after: str | None = None,
        limit: int = 50,
    ) -> list[Document]:
        """Newest first; `after` is the cursor of the previous page's last order."""
        query: dict[str, Any] = {"shop_id": shop_id}
        if line_user_id is not None:
            query["line_user_id"] = line_user_id
        if status is not None:
            query["status"] = status
        return await newest_first_page(self._orders, query, "ordered_at", after, limit)

    async def recent_for_customer(
        self, shop_id: str, line_user_id: str, since: datetime, limit: int = 12
    ) -> list[Document]:
        """The customer's latest orders since a moment, newest first (purchase history in LINE)."""
        cursor = (
            self._orders.find({"shop_id": shop_id, "line_user_id": line_user_id, "ordered_at": {"$gte": since}})
            .sort([("ordered_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [doc async for doc in cursor]
