"""Ingest signals with a durable outbox, so flow state kept at ingest survives a crash or a failing listener.

An ingest write (an order, a link, a product view) tells the flows through a
`Signal`; which listeners hear it is decided where a process is composed
(`flows.listeners.connect_listeners`), never by importing a module. Each send
first writes an *intent* to `signal_outbox` (inside the ingest's own
transaction when it has one, otherwise before the write), then runs the
listeners, then deletes the intent. A process that dies in between, or a
listener that raises, leaves the intent behind; the worker's `drain` runs it
again after a grace period. Listeners are therefore idempotent: they recompute
flow state from the source rows (or use `$max` of event times), so a second
run — or a run for a write that never happened — changes nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from storage.types import Document, IndexSpec

if TYPE_CHECKING:
    from storage.database import Database

log = logging.getLogger("linecrm.signals")

OUTBOX = "signal_outbox"
INDEXES: list[IndexSpec] = [IndexSpec(OUTBOX, [("due_at", ASCENDING)], "outbox_due")]
GRACE = timedelta(seconds=60)  # the live path finishes well within this; the drain leaves younger intents alone
RETRY_AFTER = timedelta(minutes=2)
MAX_ATTEMPTS = 10

Listener = Callable[..., Awaitable[None]]  # (database, *args)


class RetryLater(Exception):
    """A listener cannot decide yet (e.g. a worker holds the contact): the intent stays for the drain."""


@dataclass
class Intent:
    """A written intent: `deliver()` runs the listeners and, when all succeeded, deletes the intent."""

    signal: Signal
    database: Database
    args: tuple[Any, ...]
    id: str | None  # None: no listener, nothing was written

    async def deliver(self) -> bool:
        if self.id is None:
            return True
        if await self.signal.run(self.database, self.args):
            await self.database[OUTBOX].delete_one({"_id": self.id})
            return True
        return False


async def deliver_all(intents: Sequence[Intent]) -> None:
    """Deliver intents in order, deleting the delivered ones with one write."""
    done: list[str] = []
    for intent in intents:
        if intent.id is None:
            continue
        if await intent.signal.run(intent.database, intent.args):
            done.append(intent.id)
    if done:
        await intents[0].database[OUTBOX].delete_many({"_id": {"$in": done}})


async def drop_all(intents: Sequence[Intent]) -> None:
    """Forget intents whose ingest turned out to change nothing (e.g. a replayed event)."""
    ids = [intent.id for intent in intents if intent.id is not None]
    if ids:
        await intents[0].database[OUTBOX].delete_many({"_id": {"$in": ids}})


class Signal:
    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Listener] = []

    def connect(self, listener: Listener) -> Listener:
        if listener not in self._listeners:
            self._listeners.append(listener)
        return listener

    def disconnect(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(self._listeners)

    async def intend(self, database: Database, *args: Any, now: datetime,
                     session: AsyncClientSession | None = None) -> Intent:
        """Write the intent (in `session`'s transaction when given); call `deliver()` after the ingest write."""
        if not self._listeners:
            return Intent(self, database, args, None)
        entry = self._entry(args, now)
        await database[OUTBOX].insert_one(entry, session=session)
        return Intent(self, database, args, str(entry["_id"]))

    async def intend_many(self, database: Database, calls: Sequence[tuple[Any, ...]], now: datetime,
                          session: AsyncClientSession | None = None) -> list[Intent]:
        """`intend` for several calls with one insert (in `session`'s transaction when given)."""
        if not self._listeners or not calls:
            return [Intent(self, database, tuple(args), None) for args in calls]
        entries = [self._entry(args, now) for args in calls]
        await database[OUTBOX].insert_many(entries, ordered=False, session=session)
        return [Intent(self, database, tuple(args), str(entry["_id"]))
                for args, entry in zip(calls, entries, strict=True)]

    def _entry(self, args: Sequence[Any], now: datetime) -> Document:
        return {"_id": secrets.token_hex(12), "signal": self.name, "args": list(args), "created_at": now,
                "due_at": now + GRACE, "attempts": 0}

    async def send(self, database: Database, *args: Any, now: datetime) -> bool:
        """Intent, listeners, done: for an ingest write that already happened and is replayed safely."""
        return await (await self.intend(database, *args, now=now)).deliver()

    async def run(self, database: Database, args: Sequence[Any]) -> bool:
        """Call every listener in order; a failing one is logged, the others still run. True when all succeeded."""
        ok = True
        for listener in self._listeners:
            try:
                await listener(database, *args)
            except RetryLater as exc:
                ok = False
                log.info("listener %s of %s will run again: %s", getattr(listener, "__name__", listener), self.name,
                         exc)
            except Exception:
                ok = False
                log.exception("listener %s of %s failed", getattr(listener, "__name__", listener), self.name)
        return ok


@dataclass
class Signals:
    """The ingest signals of one process (its `Database` carries them)."""

    # (database, order: dict, previous: dict | None, now: datetime) after an order is stored or changed.
    order_recorded: Signal = field(default_factory=lambda: Signal("order_recorded"))
    # (database, shop_id: str, browser_id: str, line_user_id: str, now: datetime) after a browser is linked.
    browser_linked: Signal = field(default_factory=lambda: Signal("browser_linked"))
    # (database, shop_id: str, line_user_id: str, product_id: str, viewed_at: datetime) for a linked browser's view.
    product_viewed: Signal = field(default_factory=lambda: Signal("product_viewed"))
    # (database, shop_id: str, events: list[dict], now: datetime): browser events as stored by the tracking
    # endpoint (`linking.tracking.event_document` fields plus `line_user_id`, the browser's owner or None).
    # Sent for every event of a request, new or replayed: listeners dedupe by `event_id`.
    browser_events: Signal = field(default_factory=lambda: Signal("browser_events"))
    # (database, shop_id: str, followers: list[[line_user_id: str, is_unblocked: bool | None]], now: datetime)
    # after the follows of a batch of webhook events: one intent, one listener call for them all.
    customers_followed: Signal = field(default_factory=lambda: Signal("customers_followed"))
    # (database, shop_id: str, line_user_id: str, is_unblocked: bool | None, now: datetime): one follow, as
    # earlier versions sent it; kept so that their intents still waiting in the outbox are delivered.
    customer_followed: Signal = field(default_factory=lambda: Signal("customer_followed"))
    # (database, shop_id: str, line_user_ids: list[str], added: list[str], removed: list[str], now: datetime)
    # after the admin API changed tags; `added` may name tags a customer already had (listeners check).
    tags_changed: Signal = field(default_factory=lambda: Signal("tags_changed"))
    # (database, shop_id: str, line_user_id: str, types: list[str], now: datetime) after a points transaction
    # was posted (`types`: the types of the entries it wrote, e.g. ["earn"], or ["expire", "use"] when due
    # expiries went first); intended inside the ledger's transaction. The worker's expiry job does not send it.
    points_recorded: Signal = field(default_factory=lambda: Signal("points_recorded"))

    def all(self) -> list[Signal]:
        return [self.order_recorded, self.browser_linked, self.product_viewed, self.browser_events,
                self.customers_followed, self.customer_followed, self.tags_changed, self.points_recorded]

    async def drain(self, database: Database, now: datetime, limit: int = 500) -> dict[str, int]:
        """Run again the intents left by a crash or a failed listener (the worker's `outbox` job).

        Each intent is taken with a conditional update that moves its `due_at`
        (a lease), so two workers never run one intent at the same time.
        """
        by_name = {signal.name: signal for signal in self.all()}
        summary = {"redelivered": 0, "failed": 0, "given_up": 0}
        entries: list[Document] = [doc async for doc in database[OUTBOX].find(
            {"due_at": {"$lte": now}}).sort("due_at", ASCENDING).limit(limit)]
        for entry in entries:
            taken = await database[OUTBOX].update_one(
                {"_id": entry["_id"], "due_at": entry["due_at"]},
                {"$set": {"due_at": now + RETRY_AFTER}, "$inc": {"attempts": 1}})
            if taken.modified_count != 1:
                continue
            signal = by_name.get(str(entry.get("signal")))
            if signal is None or int(entry.get("attempts") or 0) + 1 > MAX_ATTEMPTS:
                log.error("outbox intent %s (%s) given up after %s attempts", entry["_id"], entry.get("signal"),
                          entry.get("attempts"))
                await database[OUTBOX].update_one({"_id": entry["_id"]}, {"$set": {"due_at": None, "given_up": True}})
                summary["given_up"] += 1
                continue
            if await signal.run(database, entry.get("args") or []):
                await database[OUTBOX].delete_one({"_id": entry["_id"]})
                summary["redelivered"] += 1
            else:
                summary["failed"] += 1
        return summary
