"""The points ledger: earn / use / expire / adjust transactions, unique by the shop's transaction ID.

Ledger document (`points_ledger`, `_id` = "<shop_id>:<transaction_id>"):
  shop_id, transaction_id, line_user_id, type, amount (as posted: positive,
  signed for adjust), delta (signed effect on the balance), expires_at (earns),
  reason, occurred_at, created_at.

The balance lives on the customer (`customers.points.balance`) and moves only
inside the transaction that inserts the ledger entry, so a replayed or
concurrent post can never count twice; a debit is refused rather than taking
the balance below zero.

Expiry model (documented for the scheduler): every earn (and positive adjust)
is a lot; debits (use, expire, negative adjust) consume lots in order of
expiry date, soonest first, lots without expiry last, ties by age — i.e.
first-in-first-out for a shop with one validity period. Lots are replayed from
the ledger in `occurred_at` order. `customers.points.soonest_expiry_at` and
`soonest_expiring_amount` are kept with each post (indexed, so the scheduler
can find due expiries); expiring a lot is an `expire` transaction for its
remaining amount.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from storage.customers import new_customer_fields
from storage.database import Database, Document, IndexSpec
from storage.keys import customer_key, shop_scoped
from storage.paging import newest_first_page

INDEXES: list[IndexSpec] = (
    [
        IndexSpec("points_ledger", [("shop_id", ASCENDING), ("transaction_id", ASCENDING)], "shop_txn", unique=True),
        IndexSpec(
            "points_ledger",
            [("shop_id", ASCENDING), ("line_user_id", ASCENDING), ("occurred_at", ASCENDING), ("_id", ASCENDING)],
            "shop_user_occurred",
        ),
        IndexSpec("customers", [("shop_id", ASCENDING), ("points.soonest_expiry_at", ASCENDING)], "shop_points_expiry"),
    ]
)

TransactionType = Literal["earn", "use", "expire", "adjust"]
Outcome = Literal["created", "existing"]
COMPARED_FIELDS = ("line_user_id", "type", "amount", "expires_at", "reason")


class InsufficientPoints(Exception):
    """A debit larger than the balance; nothing was stored."""


class TransactionConflict(Exception):
    """The transaction ID was already used for a different transaction."""


def signed_delta(kind: str, amount: int) -> int:
    return amount if kind in ("earn", "adjust") else -amount


@dataclass
class Lot:
    amount: int
    expires_at: datetime | None
    earned_at: datetime


def replay_lots(entries: Iterable[Mapping[str, Any]]) -> list[Lot]:
    """Remaining points per earn after every debit, soonest-expiring first (pure)."""
    lots: list[Lot] = []
    ordered = sorted(entries, key=lambda e: (e["occurred_at"], e.get("created_at") or e["occurred_at"], e["_id"]))
    for entry in ordered:
        delta = int(entry["delta"])
        if delta > 0:
            lots.append(Lot(delta, entry.get("expires_at"), entry["occurred_at"]))
            lots.sort(key=lambda lot: (lot.expires_at is None, lot.expires_at or lot.earned_at, lot.earned_at))
            continue
        owed = -delta
        for lot in lots:
            taken = min(owed, lot.amount)
            lot.amount -= taken
            owed -= taken
            if owed == 0:
                break
        lots = [lot for lot in lots if lot.amount > 0]
    return lots


def soonest_expiring(lots: Iterable[Lot], after: datetime | None = None) -> tuple[int | None, datetime | None]:
    """The amount and date of the next expiry (after `after`, when given); (None, None) when nothing expires."""
    dated = [lot for lot in lots if lot.expires_at is not None and (after is None or lot.expires_at > after)]
    if not dated:
        return None, None
    first = min(lot.expires_at for lot in dated if lot.expires_at is not None)
    return sum(lot.amount for lot in dated if lot.expires_at == first), first


@dataclass(frozen=True)
class PointsSummary:
    balance: int
    soonest_expiring_amount: int | None
    soonest_expiry_at: datetime | None


@dataclass(frozen=True)
class Posted:
    outcome: Outcome
    entry: Document
    balance: int


class PointsRepository:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._ledger = database["points_ledger"]
        self._customers = database["customers"]

    async def post(self, shop_id: str, transaction: dict[str, Any], now: datetime) -> Posted:
        """Record one transaction once; raises InsufficientPoints / TransactionConflict (nothing stored)."""
        key = shop_scoped(shop_id, transaction["transaction_id"])

        async def apply(session: AsyncClientSession) -> Posted:
            existing = await self._ledger.find_one({"_id": key}, session=session)
            if existing is not None:
                if any(existing.get(f) != transaction.get(f) for f in COMPARED_FIELDS):
                    raise TransactionConflict(transaction["transaction_id"])
                customer = await self._customers.find_one(
                    {"_id": customer_key(shop_id, existing["line_user_id"])}, session=session
                )
                return Posted("existing", existing, int(((customer or {}).get("points") or {}).get("balance", 0)))
            entry = {
                "_id": key,
                "shop_id": shop_id,
                **transaction,
                "delta": signed_delta(transaction["type"], transaction["amount"]),
                "occurred_at": transaction.get("occurred_at") or now,
                "created_at": now,
            }
            await self._ledger.insert_one(entry, session=session)
            balance = await self._move_balance(shop_id, entry, now, session)
            return Posted("created", entry, balance)

        async with self._database.client.start_session() as session:
            return await session.with_transaction(apply)

    async def _move_balance(self, shop_id: str, entry: Document, now: datetime, session: AsyncClientSession) -> int:
        line_user_id, delta = entry["line_user_id"], entry["delta"]
        ckey = customer_key(shop_id, line_user_id)
        if delta < 0:
            result = await self._customers.update_one(
                {"_id": ckey, "points.balance": {"$gte": -delta}}, {"$inc": {"points.balance": delta}}, session=session
            )
            if result.matched_count == 0:
                raise InsufficientPoints(entry["transaction_id"])
        else:
            await self._customers.update_one(
                {"_id": ckey},
                {"$inc": {"points.balance": delta}, "$setOnInsert": new_customer_fields(shop_id, line_user_id, now)},
                upsert=True,
                session=session,
            )
        lots = replay_lots(await self._entries(shop_id, line_user_id, session))
        amount, expiry = soonest_expiring(lots)
        await self._customers.update_one(
            {"_id": ckey},
            {"$set": {"points.soonest_expiring_amount": amount, "points.soonest_expiry_at": expiry,
                      "points.updated_at": now, "updated_at": now}},
            session=session,
        )
        customer = await self._customers.find_one({"_id": ckey}, projection={"points.balance": 1}, session=session)
        return int(customer["points"]["balance"]) if customer else 0

    async def _entries(self, shop_id: str, line_user_id: str, session: AsyncClientSession | None = None) -> list[Document]:
        cursor = self._ledger.find({"shop_id": shop_id, "line_user_id": line_user_id}, session=session)
        return [doc async for doc in cursor]

    async def summary(self, shop_id: str, line_user_id: str, now: datetime) -> PointsSummary:
        """Balance and the next expiry still ahead of `now` (lots past their date await the scheduler)."""
        customer = await self._customers.find_one({"_id": customer_key(shop_id, line_user_id)}, projection={"points": 1})
        balance = int(((customer or {}).get("points") or {}).get("balance", 0))
        amount, expiry = soonest_expiring(replay_lots(await self._entries(shop_id, line_user_id)), after=now)
        return PointsSummary(balance, amount, expiry)

    async def history(self, shop_id: str, line_user_id: str, *, after: str | None, limit: int) -> list[Document]:
        """Newest first; `after` is the previous page's last cursor."""
        return await newest_first_page(
            self._ledger, {"shop_id": shop_id, "line_user_id": line_user_id}, "occurred_at", after, limit
        )
