"""Orders by the shop's order ID, and the aggregates they keep current.

Document (`orders`, `_id` = "<shop_id>:<order_id>"): shop_id, order_id,
line_user_id (resolved at ingest: given, else the browser's link, else the
customer with that shop_customer_id, else the customer with that e-mail, else
the owner of the cart whose token it carries),
customer_id, browser_id, email, items[{product_id, variant_id, quantity, price}],
total, status (paid | cancelled | refunded), ordered_at, cart_token, created_at,
updated_at.

A paid order counts towards `customers.totals` (purchase_count, total_spend,
last_purchase_at) and `products.sold_count`. Orders are written in batches (a
single order is a batch of one): the previous versions are read with one `_id`
lookup, a pure plan works out the new documents and the *summed* differences per
customer and per product, and one transaction writes the orders (each guarded by
the `version` it was planned from) together with those increments. So a replay
changes nothing, paid→refunded reverses exactly once, a crash never leaves the
totals half-applied, and a concurrent writer makes the batch re-plan instead of
applying a difference twice. An order whose customer cannot be resolved is
stored but counts for nobody.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.bulk import only_duplicates
from storage.carts import CARTS, cart_key
from storage.customers import new_customer_fields
from storage.database import Database, Document, IndexSpec, find_by_ids
from storage.keys import browser_key, customer_key, shop_scoped
from storage.paging import newest_first_page
from storage.products import ProductRepository
from storage.signals import Intent

# Time fields are indexed ascending even though we read newest first: SecantusDB 0.7 answers a
# one-sided `$gte` over a descending index key with nothing (found while testing this module).
INDEXES: list[IndexSpec] = (
    [
        IndexSpec("orders", [("shop_id", ASCENDING), ("order_id", ASCENDING)], "shop_order", unique=True),
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
CHUNK = 500  # orders per transaction
MAX_ATTEMPTS = 10  # re-plans after a concurrent writer got there first

log = logging.getLogger("linecrm.orders")


def order_key(shop_id: str, order_id: str) -> str:
    return shop_scoped(shop_id, order_id)


@dataclass(frozen=True)
class Contribution:
    """What one order adds to the aggregates: nothing unless it is paid and has a customer."""

    line_user_id: str | None
    purchases: int
    spend: int
    quantities: Counter[str]
    paid_at: datetime | None = None


def contribution(order: Mapping[str, Any] | None) -> Contribution:
    if order is None or order.get("status") != "paid":
        return Contribution(None, 0, 0, Counter())
    quantities: Counter[str] = Counter()
    for item in order.get("items", []):
        quantities[item["product_id"]] += int(item["quantity"])
    return Contribution(order.get("line_user_id"), 1, int(order.get("total", 0)), quantities, order.get("ordered_at"))


def is_same(stored: Mapping[str, Any], incoming: Mapping[str, Any]) -> bool:
    return all(stored.get(field) == incoming.get(field) for field in MATERIAL_FIELDS)


@dataclass(frozen=True)
class Recorded:
    outcome: Outcome
    order: Document
    previous: Document | None


@dataclass
class CustomerChange:
    """The net change one batch makes to one customer's totals."""

    purchases: int = 0
    spend: int = 0
    latest_paid_at: datetime | None = None  # newest ordered_at among the batch's orders now counting for them
    recompute_latest: bool = False  # a purchase was taken back or moved earlier: ask the orders again


@dataclass
class BatchPlan:
    """What one batch writes: order documents, and the summed aggregate differences."""

    recorded: list[Recorded]
    inserts: list[Document] = field(default_factory=list)
    replaces: list[tuple[Document, int | None]] = field(default_factory=list)  # (new, stored version)
    customers: dict[str, CustomerChange] = field(default_factory=dict)
    quantities: Counter[str] = field(default_factory=Counter)

    @property
    def has_writes(self) -> bool:
        return bool(self.inserts or self.replaces)

    def add_difference(self, new: Contribution, old: Contribution) -> None:
        if old.line_user_id is not None and old.purchases:
            change = self.customers.setdefault(old.line_user_id, CustomerChange())
            change.purchases -= old.purchases
            change.spend -= old.spend
            still_counts = new.purchases and new.line_user_id == old.line_user_id
            if not (still_counts and new.paid_at is not None and old.paid_at is not None and new.paid_at >= old.paid_at):
                change.recompute_latest = True
        if new.line_user_id is not None and new.purchases:
            change = self.customers.setdefault(new.line_user_id, CustomerChange())
            change.purchases += new.purchases
            change.spend += new.spend
            if new.paid_at is not None and (change.latest_paid_at is None or new.paid_at > change.latest_paid_at):
                change.latest_paid_at = new.paid_at
        self.quantities.update(new.quantities)
        self.quantities.subtract(old.quantities)


def plan_batch(
    shop_id: str, incoming: Sequence[tuple[str, Mapping[str, Any]]], stored: Mapping[str, Document], now: datetime
) -> BatchPlan:
    """Apply the incoming orders in turn over the stored versions (pure).

    An order ID given twice applies twice, the second over the first; each change
    is one `Recorded` (for the signal), while the aggregates move once per order
    from its stored version to its final one.
    """
    current: dict[str, Document] = {}
    recorded: list[Recorded] = []
    for order_id, fields in incoming:
        key = order_key(shop_id, order_id)
        previous = current.get(key, stored.get(key))
        values = dict(fields)
        if values.get("ordered_at") is None:
            values["ordered_at"] = previous["ordered_at"] if previous else now
        if previous is not None and is_same(previous, values):
            recorded.append(Recorded("unchanged", previous, previous))
            continue
        if previous is None:
            order = {"_id": key, "shop_id": shop_id, "order_id": order_id, **values, "created_at": now,
                     "updated_at": now, "version": 1}
        else:
            order = {**previous, **values, "updated_at": now, "version": int(previous.get("version") or 0) + 1}
        current[key] = order
        recorded.append(Recorded("created" if previous is None else "updated", order, previous))
    plan = BatchPlan(recorded)
    for key, order in current.items():
        before = stored.get(key)
        if before is None:
            plan.inserts.append(order)
        else:
            plan.replaces.append((order, before.get("version")))
        plan.add_difference(contribution(order), contribution(before))
    return plan


@dataclass(frozen=True)
class Identity:
    """Whichever customer identities the shop sent with an order."""

    line_user_id: str | None = None
    browser_id: str | None = None
    customer_id: str | None = None
    email: str | None = None
    cart_token: str | None = None  # the cart's owner, when nothing else names the customer (a guest checkout)


class StaleBatch(Exception):
    """Another writer changed one of the batch's orders after we read it: read and plan again."""


class OrderRepository:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._orders = database["orders"]
        self._customers = database["customers"]

    async def resolve_line_users(self, shop_id: str, identities: Sequence[Identity]) -> list[str | None]:
        """Who placed each order, from the strongest identity known: LINE user, browser link, customer ID, e-mail,
        the owner of the cart it carries the token of.

        Browsers are read with one `_id $in`; customer IDs and e-mails (rare, and `$in` on a
        secondary index is slow here) with one indexed look-up per distinct value.
        """
        resolved: list[str | None] = [identity.line_user_id or None for identity in identities]
        browser_keys = sorted({browser_key(shop_id, i.browser_id) for i, r in zip(identities, resolved) if r is None and i.browser_id})
        if browser_keys:
            linked: dict[str, str] = {}
            async for doc in self._database["browsers"].find({"_id": {"$in": browser_keys}}, {"line_user_id": 1}):
                if doc.get("line_user_id"):
                    linked[doc["_id"]] = str(doc["line_user_id"])
            resolved = [r or (linked.get(browser_key(shop_id, i.browser_id)) if i.browser_id else None)
                        for i, r in zip(identities, resolved)]
        for field_name, attribute in (("shop_customer_id", "customer_id"), ("email", "email")):
            wanted = {getattr(i, attribute) for i, r in zip(identities, resolved) if r is None and getattr(i, attribute)}
            found: dict[str, str] = {}
            for value in sorted(wanted):
                customer = await self._customers.find_one(
                    {"shop_id": shop_id, field_name: value}, projection={"line_user_id": 1}
                )
                if customer:
                    found[value] = str(customer["line_user_id"])
            resolved = [r or found.get(getattr(i, attribute) or "") for i, r in zip(identities, resolved)]
        cart_keys = sorted({cart_key(shop_id, i.cart_token) for i, r in zip(identities, resolved)
                            if r is None and i.cart_token})
        if cart_keys:
            owners = {doc["_id"]: str(doc["line_user_id"]) for doc in await find_by_ids(
                self._database[CARTS], cart_keys, {"line_user_id": 1}) if doc.get("line_user_id")}
            resolved = [r or (owners.get(cart_key(shop_id, i.cart_token)) if i.cart_token else None)
                        for i, r in zip(identities, resolved)]
        return resolved

    async def record(self, shop_id: str, order_id: str, fields: dict[str, Any], now: datetime) -> Recorded:
        """Store one order idempotently (a batch of one)."""
        return (await self.record_many(shop_id, [(order_id, fields)], now))[0]

    async def record_many(
        self, shop_id: str, incoming: Sequence[tuple[str, Mapping[str, Any]]], now: datetime
    ) -> list[Recorded]:
        """Store orders idempotently with their aggregates, one transaction per chunk; then tell the listeners.

        Returns one `Recorded` per incoming order, in order. `fields` hold every material field
        (line_user_id already resolved; `ordered_at` None means "keep the stored one, else now").
        """
        recorded: list[Recorded] = []
        intents: list[Intent] = []
        for start in range(0, len(incoming), CHUNK):
            chunk, chunk_intents = await self._commit_chunk(shop_id, incoming[start:start + CHUNK], now)
            recorded += chunk
            intents += chunk_intents
        await self._ensure_customers(shop_id, recorded, now)
        for intent in intents:  # in batch order (the database serves one at a time anyway)
            await intent.deliver()
        return recorded

    async def _commit_chunk(
        self, shop_id: str, incoming: Sequence[tuple[str, Mapping[str, Any]]], now: datetime
    ) -> tuple[list[Recorded], list[Intent]]:
        keys = sorted({order_key(shop_id, order_id) for order_id, _ in incoming})
        for attempt in range(MAX_ATTEMPTS):
            stored = {doc["_id"]: doc async for doc in self._orders.find({"_id": {"$in": keys}})}
            plan = plan_batch(shop_id, incoming, stored, now)
            if not plan.has_writes:
                return plan.recorded, []  # a replay: nothing to write
            intents: list[Intent] = []
            try:
                async with self._database.client.start_session() as session:
                    await session.with_transaction(partial(self._write, shop_id, plan, now, intents))
                return plan.recorded, intents
            except (StaleBatch, DuplicateKeyError, BulkWriteError) as exc:
                if isinstance(exc, BulkWriteError) and not only_duplicates(exc):
                    raise
                if attempt + 1 == MAX_ATTEMPTS:
                    raise
                log.info("order batch of shop %s raced another writer (attempt %d); re-planning", shop_id, attempt + 1)
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    async def _write(self, shop_id: str, plan: BatchPlan, now: datetime, intents: list[Intent],
                     session: AsyncClientSession) -> None:
        """Inside the transaction: the orders (guarded by version), the summed differences, and the
        `order_recorded` intents, so a crash after the commit leaves them for the worker's outbox drain."""
        ops: list[InsertOne[Document] | ReplaceOne[Document]] = [InsertOne(order) for order in plan.inserts]
        ops += [ReplaceOne({"_id": order["_id"], "version": version}, order) for order, version in plan.replaces]
        result = await self._orders.bulk_write(ops, ordered=True, session=session)
        if result.matched_count != len(plan.replaces):
            raise StaleBatch
        updates: list[UpdateOne] = []
        for line_user_id, change in sorted(plan.customers.items()):
            insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id, now).items() if k != "totals"}
            update: dict[str, Any] = {
                "$inc": {"totals.purchase_count": change.purchases, "totals.total_spend": change.spend},
                "$set": {"updated_at": now},
                "$setOnInsert": {**insert, "totals.first_seen_at": now},
            }
            if change.recompute_latest:  # the latest remaining paid order, reading our own writes
                update["$set"]["totals.last_purchase_at"] = await self._latest_paid(shop_id, line_user_id, session)
            elif change.latest_paid_at is not None:
                update["$max"] = {"totals.last_purchase_at": change.latest_paid_at}
            updates.append(UpdateOne({"_id": customer_key(shop_id, line_user_id)}, update, upsert=True))
        if updates:
            await self._customers.bulk_write(updates, ordered=False, session=session)
        quantities = {product_id: qty for product_id, qty in sorted(plan.quantities.items()) if qty}
        await ProductRepository(self._database).add_sold(shop_id, quantities, session=session)
        intents.clear()  # a retried transaction writes them again
        for r in plan.recorded:
            if r.outcome != "unchanged":
                intents.append(await self._database.signals.order_recorded.intend(
                    self._database, r.order, r.previous, now, now=now, session=session))

    async def _latest_paid(self, shop_id: str, line_user_id: str, session: AsyncClientSession) -> datetime | None:
        """The customer's latest paid order time, newest first through (shop_id, line_user_id, ordered_at).

        The status is checked here, not in the filter: the embedded database plans an index only when it
        covers every filter field (and a hint makes it walk the whole index).
        """
        cursor = self._orders.find({"shop_id": shop_id, "line_user_id": line_user_id},
                                   {"ordered_at": 1, "status": 1}, session=session).sort(
            [("ordered_at", DESCENDING), ("_id", DESCENDING)])
        async for order in cursor:
            if order.get("status") == "paid":
                return order.get("ordered_at")
        return None

    async def _ensure_customers(self, shop_id: str, recorded: Sequence[Recorded], now: datetime) -> None:
        """A LINE user named by an unpaid order exists as a customer too (paid ones were upserted with their totals)."""
        users = sorted({str(r.order["line_user_id"]) for r in recorded
                        if r.order.get("line_user_id") and r.order.get("status") != "paid"})
        if not users:
            return
        ops = [UpdateOne({"_id": customer_key(shop_id, user)},
                         {"$setOnInsert": new_customer_fields(shop_id, user, now)}, upsert=True) for user in users]
        try:
            await self._customers.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:  # a concurrent upsert created it first: that is all we wanted
            if not only_duplicates(exc):
                raise

    async def get(self, shop_id: str, order_id: str) -> Document | None:
        return await self._orders.find_one({"_id": order_key(shop_id, order_id)})

    async def page(
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
