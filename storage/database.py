"""The database handle shared by a process: client, collections and start-up indexes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

log = logging.getLogger("linecrm.storage")

Document = dict[str, Any]  # a BSON document as the driver hands it back


@dataclass(frozen=True)
class IndexSpec:
    """An index every process makes sure exists at start-up (create_index is idempotent)."""

    collection: str
    keys: Sequence[tuple[str, int]]
    name: str
    unique: bool = False
    expire_after_seconds: int | None = None
    partial_filter: dict[str, object] | None = None

    def model(self) -> IndexModel:
        options: dict[str, object] = {"name": self.name, "unique": self.unique}
        if self.expire_after_seconds is not None:
            options["expireAfterSeconds"] = self.expire_after_seconds
        if self.partial_filter is not None:
            options["partialFilterExpression"] = self.partial_filter
        return IndexModel(list(self.keys), **options)


INDEXES: list[IndexSpec] = [
    IndexSpec("customers", [("shop_id", ASCENDING), ("line_user_id", ASCENDING)], "shop_user", unique=True),
    IndexSpec("browsers", [("shop_id", ASCENDING), ("browser_id", ASCENDING)], "shop_browser", unique=True),
    IndexSpec("events", [("shop_id", ASCENDING), ("event_id", ASCENDING)], "shop_event", unique=True),
    IndexSpec(
        "webhook_events", [("shop_id", ASCENDING), ("webhook_event_id", ASCENDING)], "shop_webhook_event", unique=True
    ),
    IndexSpec("products", [("shop_id", ASCENDING), ("product_id", ASCENDING)], "shop_product", unique=True),
    IndexSpec("orders", [("shop_id", ASCENDING), ("order_id", ASCENDING)], "shop_order", unique=True),
    IndexSpec("points_ledger", [("shop_id", ASCENDING), ("transaction_id", ASCENDING)], "shop_txn", unique=True),
    IndexSpec("deliveries", [("shop_id", ASCENDING), ("key", ASCENDING)], "shop_delivery", unique=True),
    IndexSpec("link_tokens", [("expires_at", ASCENDING)], "expiry", expire_after_seconds=0),
]


def register_indexes(specs: Sequence[IndexSpec]) -> None:
    """Let a feature package declare the indexes its queries need, in one list."""
    for spec in specs:
        if all(existing.name != spec.name or existing.collection != spec.collection for existing in INDEXES):
            INDEXES.append(spec)


@dataclass
class Database:
    """One process's connection to MongoDB, with typed access to our collections."""

    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]

    def __getitem__(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    @property
    def shops(self) -> AsyncCollection[Document]:
        return self.db["shops"]

    async def ensure_indexes(self) -> None:
        """Create every declared index; a no-op when they already exist."""
        by_collection: dict[str, list[IndexModel]] = {}
        for spec in INDEXES:
            by_collection.setdefault(spec.collection, []).append(spec.model())
        for name, models in by_collection.items():
            await self.db[name].create_indexes(models)
        log.info("indexes ensured on %d collections", len(by_collection))

    async def ping(self) -> bool:
        """True when the server answers; used by /healthz."""
        try:
            await self.client.admin.command("ping")
        except Exception:  # noqa: BLE001 - any failure means "unreachable" here
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


def connect(uri: str, db_name: str, *, server_selection_timeout_ms: int = 5000) -> Database:
    """Open a client inside the running loop (the async client binds to it)."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=server_selection_timeout_ms, tz_aware=True, appname="linecrm"
    )
    return Database(client=client, db=client[db_name])
