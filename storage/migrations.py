"""Data migrations run at start-up, each once per database (recorded in `migrations`).

`view_keys_escaped`: product views of a browser ID holding ":" or "%" were keyed
`<shop>:<browser>:<product>` unescaped, so two (browser, product) pairs could share
one document; `storage.keys.view_key` now escapes the browser ID. Each such row is
moved to its new key (merged with any row already there) and the old one deleted,
in one transaction per row, so a crash mid-way leaves every row counted once.
Only rows whose browser ID needs escaping are touched; every other key is unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pymongo.asynchronous.client_session import AsyncClientSession

from storage.database import Database
from storage.keys import view_key
from storage.types import Document

log = logging.getLogger("linecrm.storage")

COLLECTION = "migrations"


async def _rekey_view(database: Database, doc: Document, new_key: str, session: AsyncClientSession) -> None:
    views = database["product_views"]
    await views.update_one(
        {"_id": new_key},
        {
            "$inc": {"count": int(doc.get("count") or 0)},
            "$min": {"first_viewed_at": doc.get("first_viewed_at")},
            "$max": {"last_viewed_at": doc.get("last_viewed_at")},
            "$setOnInsert": {"shop_id": doc["shop_id"], "browser_id": doc["browser_id"],
                             "product_id": doc["product_id"], "line_user_id": doc.get("line_user_id")},
        },
        upsert=True, session=session,
    )
    await views.delete_one({"_id": doc["_id"]}, session=session)


async def escape_view_keys(database: Database) -> int:
    """Move product views whose browser ID needs escaping to their escaped key; returns how many moved."""
    moved = 0
    async for doc in database["product_views"].find({"browser_id": {"$regex": "[:%]"}}):
        new_key = view_key(doc["shop_id"], doc["browser_id"], doc["product_id"])
        if new_key == doc["_id"]:
            continue

        async def move(session: AsyncClientSession, doc: Document = doc, new_key: str = new_key) -> None:
            await _rekey_view(database, doc, new_key, session)

        async with database.client.start_session() as session:
            await session.with_transaction(move)
        moved += 1
    return moved


MIGRATIONS: list[tuple[str, Callable[[Database], Awaitable[int]]]] = [
    ("view_keys_escaped", escape_view_keys),
]


async def run_migrations(database: Database) -> None:
    """Run each migration not yet recorded; safe in several processes at once (each step is idempotent)."""
    done = {doc["_id"] async for doc in database[COLLECTION].find({}, {"_id": 1})}
    for name, migrate in MIGRATIONS:
        if name in done:
            continue
        changed = await migrate(database)
        await database[COLLECTION].update_one(
            {"_id": name}, {"$setOnInsert": {"done_at": datetime.now(UTC), "changed": changed}}, upsert=True
        )
        log.info("migration %s done (%d documents changed)", name, changed)
