"""Per-deployment secret keys, made once and shared by every process through the database.

`deployment_keys`, `_id` = the key's purpose (e.g. "dashboard_sessions"): key
(32 random bytes), created_at. The first process to ask inserts a fresh key
with `$setOnInsert`; every other process, now or later, reads that same key —
so cookies signed by one web process verify in all of them, and no secret is
ever a constant in the code or a value someone has to configure.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from storage.database import Database

KEY_BYTES = 32


class DeploymentKeys:
    def __init__(self, database: Database) -> None:
        self._keys = database["deployment_keys"]

    async def get_or_create(self, purpose: str, now: datetime) -> bytes:
        """The deployment's key for `purpose` (made on first use; the same bytes ever after)."""
        fresh = {"key": secrets.token_bytes(KEY_BYTES), "created_at": now}
        try:
            await self._keys.update_one({"_id": purpose}, {"$setOnInsert": fresh}, upsert=True)
        except DuplicateKeyError:  # two processes upserted at once; the other's insert won
            pass
        doc = await self._keys.find_one({"_id": purpose})
        assert doc is not None, "a key just upserted must exist"
        return bytes(doc["key"])
