"""What the webhook events of one shop handled together share: reads made once, customer writes made together.

A batch reads the customers of all its events in one query before any
handler runs, the shop's messaging settings once, and collects the handlers'
customer writes (follow, unfollow, opt-out) to write them in one bulk write
before any answer goes out - so "配信を停止しました" is only ever said after the
flag is stored. A handler reads its batch's own pending writes (`customer`
shows them applied), so two events of one customer in one batch see each
other in order. Follows are told to the flows (`customers_followed`) as one intent
written right after the customer writes; the caller delivers them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from storage.customers import (
    CustomerChange,
    CustomerRepository,
    follow_change,
    opt_out_change,
    unfollow_change,
)
from storage.database import Database
from storage.durability import UNSYNCED
from storage.shop_settings import MessagingSettings, ShopSettingsRepository
from storage.shops import Shop
from storage.signals import Intent
from storage.types import Document


class Batch:
    def __init__(self, db: Database, shop: Shop, now: datetime) -> None:
        self.db = db
        self.shop = shop
        self.now = now
        self._customers: dict[str, Document | None] = {}
        self._unknown: set[str] = set()  # customers that did not exist when the batch read them
        self._changes: list[CustomerChange] = []
        self._followed: list[list[Any]] = []  # [line_user_id, is_unblocked]: told the flows with the flush
        self._messaging: MessagingSettings | None = None
        self._messaging_lock = asyncio.Lock()

    async def load_customers(self, line_user_ids: set[str]) -> None:
        """Read the customers of the batch's events (one query per 50) before handling starts."""
        missing = {user for user in line_user_ids if user not in self._customers}
        if not missing:
            return
        found = await CustomerRepository(self.db).get_many(self.shop.shop_id, missing)
        for user in missing:
            self._customers[user] = found.get(user)
            if user not in found:
                self._unknown.add(user)

    def customer(self, line_user_id: str) -> Document | None:
        """The customer as this batch will leave it (its pending changes applied); None when unknown."""
        return self._customers.get(line_user_id)

    async def messaging(self) -> MessagingSettings:
        """The shop's messaging settings, read once for the batch (concurrent handlers share the read)."""
        async with self._messaging_lock:
            if self._messaging is None:
                self._messaging = await ShopSettingsRepository(self.db).get(self.shop.shop_id, MessagingSettings)
            return self._messaging

    def _change(self, change: CustomerChange) -> None:
        self._changes.append(change)
        self._customers[change.line_user_id] = change.applied(self._customers.get(change.line_user_id))

    def record_follow(self, line_user_id: str, profile: dict[str, Any] | None, is_unblocked: bool | None) -> None:
        self._change(follow_change(self.shop.shop_id, line_user_id, profile, is_unblocked, self.now))
        self._followed.append([line_user_id, is_unblocked])

    def record_unfollow(self, line_user_id: str) -> None:
        self._change(unfollow_change(self.shop.shop_id, line_user_id, self.now))

    def set_opted_out(self, line_user_id: str, opted_out: bool) -> None:
        self._change(opt_out_change(self.shop.shop_id, line_user_id, opted_out, self.now))

    async def flush(self) -> list[Intent]:
        """Write the pending customer changes: new customers inserted as the batch leaves them, the others
        updated (idempotent if run again: a re-run finds the customers and updates them); then one
        `customers_followed` intent for the batch's follows (after the write: a crash in between re-runs the stored
        events, whose handlers record the follows again). The caller delivers the returned intents."""
        changes, self._changes = self._changes, []
        followed, self._followed = self._followed, []
        if not changes:
            return []
        created: dict[str, Document] = {}
        for change in changes:
            doc = self._customers.get(change.line_user_id)
            if change.line_user_id in self._unknown and doc is not None:
                created[change.line_user_id] = doc
        # Unsynced: the answers' `answering` mark (ACKNOWLEDGED) is written after it and before any answer, and
        # makes it durable; lost with an unsynced end of the log, the event is handled again (recovery).
        await CustomerRepository(self.db, UNSYNCED).apply_batch(changes, created)
        self._unknown -= set(created)
        if not followed:
            return []
        signal = self.db.signals.customers_followed
        return [await signal.intend(self.db, self.shop.shop_id, followed, self.now, now=self.now)]
