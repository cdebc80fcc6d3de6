"""The points ledger: earn / use / expire / adjust transactions, unique by the shop's transaction ID.

Ledger document (`points_ledger`, `_id` = "<shop_id>:<transaction_id>"):
  shop_id, transaction_id, line_user_id, type, amount (as posted: positive,
  signed for adjust), delta (signed effect on the balance), expires_at (earns),
  reason, occurred_at, created_at; an expiry we write also names its `lot`.

The balance lives on the customer (`customers.points`: balance, earned_total,
soonest_expiry_at, soonest_expiring_amount, updated_at) and moves only inside
the transaction that inserts the ledger entries, so a replayed or concurrent
post can never count twice; a debit is refused rather than taking the balance
below zero. `earned_total` (every earn ever, never decreasing) lets the earned
notice announce "what was earned since the last notice" from the customer alone.

Expiry model: every earn (and positive adjust) is a lot; debits (use, expire,
negative adjust) consume lots in order of expiry date, soonest first, lots
without expiry last, ties by age — i.e. first-in-first-out for a shop with one
validity period. Lots are replayed from the ledger in `occurred_at` order.
When a lot's `expires_at` has passed, what is left of it is written as an
`expire` entry (`transaction_id` "expiry/<the earn's transaction ID>", which no
merchant ID can take: the admin API refuses "/"), dated at the expiry moment.
The worker writes them at the moment (`expire_due`); every post writes the due
ones first, in its own transaction, so a use never spends expired points even
when it beats the worker; the deterministic ID makes a second writer (a rerun,
another worker, a racing post) fail instead of expiring twice. Until written,
`summary` leaves expired points out, so nobody is ever shown them.
`customers.points.soonest_expiry_at` and `soonest_expiring_amount` are kept
with each write (indexed, so the worker finds due expiries).

Not modelled: a debit back-dated before an expiry already written consumes lots
as of its date, so the replayed lots may then differ from what was expired
(the balance stays the sum of the entries, never negative).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, TypeVar

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.bulk import only_duplicates
from storage.customers import new_customer_fields
from storage.database import Database, Document, IndexSpec
from storage.keys import customer_key, shop_scoped
from storage.paging import newest_first_page
from storage.signals import Intent

log = logging.getLogger("linecrm.points")

EXPIRY_INDEX = "shop_points_expiry"
INDEXES: list[IndexSpec] = (
    [
        IndexSpec("points_ledger", [("shop_id", ASCENDING), ("transaction_id", ASCENDING)], "shop_txn", unique=True),
        IndexSpec(
            "points_ledger",
            [("shop_id", ASCENDING), ("line_user_id", ASCENDING), ("occurred_at", ASCENDING), ("_id", ASCENDING)],
            "shop_user_occurred",
        ),
        IndexSpec("customers", [("shop_id", ASCENDING), ("points.soonest_expiry_at", ASCENDING)], EXPIRY_INDEX),
    ]
)

TransactionType = Literal["earn", "use", "expire", "adjust"]
Outcome = Literal["created", "existing"]
COMPARED_FIELDS = ("line_user_id", "type", "amount", "expires_at", "reason")
EXPIRY_PREFIX = "expiry/"  # our expire entries' transaction IDs; "/" is outside the admin API's ID alphabet
EXPIRY_REASON = "expired"
MAX_ATTEMPTS = 10  # a duplicate expiry means another writer got there first: read again
EXPIRY_CHUNK = 50  # customers per expiry transaction (one `_id $in` read; short enough to rarely conflict)
EXPIRY_SCAN = 1000  # due customers per read of the expiry index
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    source: str = ""  # the transaction ID of the earn (or positive adjust) that made it


def _replay_order(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return entry["occurred_at"], entry.get("created_at") or entry["occurred_at"], entry["_id"]


def replay_lots(entries: Iterable[Mapping[str, Any]]) -> list[Lot]:
    """Remaining points per earn after every debit, soonest-expiring first (pure)."""
    lots: list[Lot] = []
    for entry in sorted(entries, key=_replay_order):
        delta = int(entry["delta"])
        if delta > 0:
            source = str(entry.get("transaction_id") or entry["_id"])
            lots.append(Lot(delta, entry.get("expires_at"), entry["occurred_at"], source))
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


def expired_lots(lots: Iterable[Lot], now: datetime) -> list[Lot]:
    """The lots whose date has passed at `now` (their remaining amounts are due to expire), soonest first."""
    return [lot for lot in lots if lot.expires_at is not None and lot.expires_at <= now]


def expiry_entries(shop_id: str, line_user_id: str, lots: Iterable[Lot], now: datetime,
                   balance: int) -> list[Document]:
    """The `expire` entries for the expired lots (pure), never more than `balance` in all."""
    entries: list[Document] = []
    left = balance
    for lot in expired_lots(lots, now):
        amount = min(lot.amount, left)
        if amount <= 0:
            # No LINE user ID in the log (a personal identifier): the lot's transaction ID finds the customer.
            log.error("points of shop %s: lot %s has %d left but the balance is only %d", shop_id, lot.source,
                      lot.amount, balance)
            break
        left -= amount
        transaction_id = f"{EXPIRY_PREFIX}{lot.source}"
        entries.append({
            "_id": shop_scoped(shop_id, transaction_id), "shop_id": shop_id, "transaction_id": transaction_id,
            "line_user_id": line_user_id, "type": "expire", "amount": amount, "delta": -amount, "expires_at": None,
            "reason": EXPIRY_REASON, "lot": lot.source, "occurred_at": lot.expires_at, "created_at": now,
        })
    return entries


@dataclass(frozen=True)
class PointsSummary:
    balance: int
    soonest_expiring_amount: int | None
    soonest_expiry_at: datetime | None


def summary_from_customer(customer: Mapping[str, Any] | None, now: datetime) -> PointsSummary | None:
    """The summary from the figures kept on the customer at every posting, without reading the ledger.

    None when the kept soonest expiry is already past (the scheduler has not
    expired those points yet): then only the ledger knows the next one.
    """
    points = (customer or {}).get("points") or {}
    expiry = points.get("soonest_expiry_at")
    if expiry is not None and expiry <= now:
        return None
    amount = points.get("soonest_expiring_amount") if expiry is not None else None
    return PointsSummary(int(points.get("balance", 0)), amount, expiry)


def effective_summary(balance: int, lots: Sequence[Lot], now: datetime) -> PointsSummary:
    """What a customer may be shown at `now`: expired lots left out even before their entries are written."""
    pending = sum(lot.amount for lot in expired_lots(lots, now))
    amount, expiry = soonest_expiring(lots, after=now)
    return PointsSummary(max(0, balance - pending), amount, expiry)


@dataclass(frozen=True)
class Posted:
    outcome: Outcome
    entry: Document
    balance: int


@dataclass
class Expired:
    """What one expiry pass wrote."""

    customers: int = 0  # customers with at least one expire entry
    entries: int = 0
    points: int = 0


T = TypeVar("T")


def _duplicate(exc: Exception) -> bool:
    return isinstance(exc, DuplicateKeyError) or isinstance(exc, BulkWriteError) and only_duplicates(exc)


class PointsRepository:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._ledger = database["points_ledger"]
        self._customers = database["customers"]

    async def _transaction(self, work: Callable[[AsyncClientSession], Awaitable[T]], what: str) -> T:
        """Run `work` in a transaction; a duplicate expiry (another writer expired first) re-runs it afresh."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with self._database.client.start_session() as session:
                    return await session.with_transaction(work)
            except (DuplicateKeyError, BulkWriteError) as exc:
                if not _duplicate(exc) or attempt + 1 == MAX_ATTEMPTS:
                    raise
                log.info("%s raced another writer (attempt %d); reading again", what, attempt + 1)
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    async def post(self, shop_id: str, transaction: dict[str, Any], now: datetime) -> Posted:
        """Record one transaction once (expiring due lots first); raises InsufficientPoints / TransactionConflict."""
        key = shop_scoped(shop_id, transaction["transaction_id"])
        intents: list[Intent] = []

        async def apply(session: AsyncClientSession) -> Posted:
            intents.clear()  # a retried transaction writes its intent again
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
            balance, types = await self._write(shop_id, entry, now, session)
            intents.append(await self._database.signals.points_recorded.intend(
                self._database, shop_id, entry["line_user_id"], types, now, now=now, session=session))
            return Posted("created", entry, balance)

        posted = await self._transaction(apply, f"points post {key}")
        for intent in intents:
            await intent.deliver()
        return posted

    async def _write(self, shop_id: str, entry: Document, now: datetime,
                     session: AsyncClientSession) -> tuple[int, list[str]]:
        """Inside the transaction: due expiries, the entry, the customer's points; returns the new balance and
        the types of the entries written."""
        line_user_id, delta = entry["line_user_id"], int(entry["delta"])
        ckey = customer_key(shop_id, line_user_id)
        customer = await self._customers.find_one({"_id": ckey}, projection={"points": 1}, session=session)
        balance = int(((customer or {}).get("points") or {}).get("balance", 0))
        entries = await self._entries(shop_id, line_user_id, session)
        expiries = expiry_entries(shop_id, line_user_id, replay_lots(entries), now, balance)
        change = delta + sum(int(e["delta"]) for e in expiries)
        if delta < 0 and balance + change < 0:
            raise InsufficientPoints(entry["transaction_id"])
        await self._ledger.insert_many([*expiries, entry], ordered=True, session=session)
        lots = replay_lots([*entries, *expiries, entry])
        amount, expiry = soonest_expiring(lots)
        inc = {"points.balance": change}
        if entry["type"] == "earn":
            inc["points.earned_total"] = delta
        result = await self._customers.update_one(
            {"_id": ckey, "points.balance": {"$gte": -change}} if change < 0 else {"_id": ckey},
            {"$inc": inc,
             "$set": {"points.soonest_expiring_amount": amount, "points.soonest_expiry_at": expiry,
                      "points.updated_at": now, "updated_at": now},
             **({} if change < 0 else {"$setOnInsert": new_customer_fields(shop_id, line_user_id, now)})},
            upsert=change >= 0,
            session=session,
        )
        if change < 0 and result.matched_count == 0:
            raise InsufficientPoints(entry["transaction_id"])
        return balance + change, [*(["expire"] if expiries else []), entry["type"]]

    async def _entries(self, shop_id: str, line_user_id: str, session: AsyncClientSession | None = None) -> list[Document]:
        cursor = self._ledger.find({"shop_id": shop_id, "line_user_id": line_user_id}, session=session)
        return [doc async for doc in cursor]

    # --- expiry (the worker's `points_expiry` job) ---

    def due_cursor(self, shop_id: str, now: datetime) -> AsyncCursor[Document]:
        """The shop's customers with a lot past its date, through the expiry index (the filter is its fields,
        so the planner takes it; a hint would make the embedded database walk the whole index). The lower
        bound keeps the scan off the customers without points (null sorts first: ×8 at 150,000 customers)."""
        return self._customers.find({"shop_id": shop_id, "points.soonest_expiry_at": {"$gte": EPOCH, "$lte": now}},
                                    {"line_user_id": 1}).batch_size(EXPIRY_SCAN)

    async def holders(self, shop_id: str, size: int) -> AsyncIterator[list[str]]:
        """The shop's customers with a balance above 0, `size` at a time: one indexed scan of the shop's
        customers (a filter on the balance too would be a collection scan: no index covers it)."""
        batch: list[str] = []
        async for doc in self._customers.find({"shop_id": shop_id}, {"line_user_id": 1, "points.balance": 1}
                                              ).batch_size(1000):
            if int((doc.get("points") or {}).get("balance") or 0) > 0:
                batch.append(str(doc["line_user_id"]))
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    async def expire_due(self, shop_id: str, line_user_ids: Sequence[str], now: datetime,
                         chunk_size: int = EXPIRY_CHUNK) -> Expired:
        """Write the due `expire` entries of these customers and lower their balances, one transaction per
        chunk, so an expiry and its balance change land together.

        No `points_recorded` signal: nothing at ingest needs to hear of an expiry (the expiry reminder wakes at
        each expiry moment by itself), and a listener's write per customer would triple the cost.
        """
        done = Expired()
        for start in range(0, len(line_user_ids), chunk_size):
            chunk = list(dict.fromkeys(line_user_ids[start:start + chunk_size]))
            part = await self._transaction(partial(self._expire_chunk, shop_id, chunk, now),
                                           f"points expiry of shop {shop_id}")
            done.customers += part.customers
            done.entries += part.entries
            done.points += part.points
        return done

    async def _expire_chunk(self, shop_id: str, line_user_ids: list[str], now: datetime,
                            session: AsyncClientSession) -> Expired:
        keys = [customer_key(shop_id, user) for user in line_user_ids]
        customers = {doc["line_user_id"]: doc async for doc in self._customers.find(
            {"_id": {"$in": keys}}, {"line_user_id": 1, "points": 1}, session=session)}
        part = Expired()
        inserts: list[Document] = []
        updates: list[UpdateOne] = []
        for user in line_user_ids:
            points = (customers.get(user) or {}).get("points") or {}
            due = points.get("soonest_expiry_at")
            if due is None or due > now:  # expired meanwhile by a post or another worker
                continue
            balance = int(points.get("balance", 0))
            entries = await self._entries(shop_id, user, session)
            expiries = expiry_entries(shop_id, user, replay_lots(entries), now, balance)
            amount, expiry = soonest_expiring(replay_lots([*entries, *expiries]), after=now)
            change = sum(int(e["delta"]) for e in expiries)
            updates.append(UpdateOne(
                {"_id": customer_key(shop_id, user), "points.balance": {"$gte": -change}},
                {"$inc": {"points.balance": change},
                 "$set": {"points.soonest_expiring_amount": amount, "points.soonest_expiry_at": expiry,
                          "points.updated_at": now, "updated_at": now}}))
            if expiries:
                inserts += expiries
                part.customers += 1
                part.entries += len(expiries)
                part.points -= change
        if inserts:
            await self._ledger.insert_many(inserts, ordered=True, session=session)
        if updates:
            result = await self._customers.bulk_write(updates, ordered=True, session=session)
            if result.matched_count != len(updates):
                raise RuntimeError("a balance moved under the expiry transaction")  # aborts it: never negative
        return part

    # --- reading ---

    async def summary(self, shop_id: str, line_user_id: str, now: datetime) -> PointsSummary:
        """Balance and the next expiry still ahead of `now`; points past their date are left out even
        before the worker has written their expiry."""
        customer = await self._customers.find_one({"_id": customer_key(shop_id, line_user_id)}, projection={"points": 1})
        balance = int(((customer or {}).get("points") or {}).get("balance", 0))
        return effective_summary(balance, replay_lots(await self._entries(shop_id, line_user_id)), now)

    async def history(self, shop_id: str, line_user_id: str, *, after: str | None, limit: int) -> list[Document]:
        """Newest first; `after` is the previous page's last cursor."""
        return await newest_first_page(
            self._ledger, {"shop_id": shop_id, "line_user_id": line_user_id}, "occurred_at", after, limit
        )

