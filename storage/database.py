"""The database handle shared by a process: client, collections and start-up indexes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from storage import driver_fixes
from storage.signals import Signals
from storage.types import Document, IndexSpec

__all__ = ["Database", "Document", "IndexSpec", "connect", "find_by_ids"]  # shared types re-exported

log = logging.getLogger("linecrm.storage")
HEARTBEAT_MS = 1000

ID_CHUNK = 50  # ids per `_id: {$in}`: the embedded database's cost grows faster than the list (50 ≈ 10 ms)


async def find_by_ids(collection: AsyncCollection[Document], ids: Sequence[str],
                      projection: Mapping[str, Any] | None = None) -> list[Document]:
    """Documents by `_id`, in concurrent chunks (one round trip's latency, not one per chunk)."""
    unique = list(dict.fromkeys(ids))
    chunks = [unique[i:i + ID_CHUNK] for i in range(0, len(unique), ID_CHUNK)]

    async def read(chunk: list[str]) -> list[Document]:
        return [doc async for doc in collection.find({"_id": {"$in": chunk}}, projection)]

    return [doc for part in await asyncio.gather(*(read(chunk) for chunk in chunks)) for doc in part]


@dataclass
class Database:
    """One process's connection to MongoDB, with typed access to our collections."""

    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    # The process's ingest signals; their listeners are connected where the process is composed.
    signals: Signals = field(default_factory=Signals)

    def __getitem__(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    @property
    def shops(self) -> AsyncCollection[Document]:
        return self.db["shops"]

    async def ensure_indexes(self, specs: Sequence[IndexSpec]) -> None:
        """Create these indexes (the process's whole list, `storage.schema.INDEXES`); a no-op when they exist."""
        by_collection: dict[str, list[IndexModel]] = {}
        for spec in specs:
            by_collection.setdefault(spec.collection, []).append(spec.model())
        for name, models in by_collection.items():
            await self.db[name].create_indexes(models)
        log.info("indexes ensured on %d collections", len(by_collection))

    async def drop_indexes(self, names: Sequence[tuple[str, str]]) -> None:
        """Drop indexes an earlier version made and no longer uses (`storage.schema.OBSOLETE_INDEXES`)."""
        for collection, name in names:
            try:
                await self.db[collection].drop_index(name)
            except OperationFailure:  # not there (never made, or dropped already)
                continue
            log.info("dropped obsolete index %s.%s", collection, name)

    async def ping(self) -> bool:
        """True when the server answers; used by /healthz."""
        try:
            await self.client.admin.command("ping")
        except Exception:  # noqa: BLE001 - any failure means "unreachable" here
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


# Every write is acknowledged only once it is in the journal on disk (`j: true`) - and, on a replica
# set, on a majority of members - so nothing we answered 200/201 for (webhook and tracking events,
# deliveries, ledger entries, orders, shops…) is lost when the database is killed or fails over.
# Measured cost on the embedded database: +0.2 ms per single-document write, +0.1 ms per bulk
# write (README "Durability"). Without it, SecantusDB keeps commits in its log buffer and a
# SIGKILL loses the last ones (tests/storage/test_durability.py).
WRITE_CONCERN_W, WRITE_CONCERN_JOURNAL = "majority", True


def connect(uri: str, db_name: str, *, server_selection_timeout_ms: int = 5000) -> Database:
    """Open a client inside the running loop (the async client binds to it).

    The driver looks at a server it lost every second (not every ten): endpoints that answer 503 while the
    database is down (storage.durability.writable) take traffic again about a second after it is back.
    A connection being opened when its task is cancelled is closed (`storage.driver_fixes`).
    """
    driver_fixes.install()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=server_selection_timeout_ms, tz_aware=True, appname="linecrm",
        heartbeatFrequencyMS=HEARTBEAT_MS,
        w=WRITE_CONCERN_W, journal=WRITE_CONCERN_JOURNAL,
    )
    return Database(client=client, db=client[db_name])
