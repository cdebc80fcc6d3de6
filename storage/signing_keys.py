"""Per-deployment signing keys (random, 32 bytes), made once and shared by every process.

`signing_keys`, `_id` = the key's purpose (e.g. "link_token"): key (bytes), created_at.
The first process that needs a key inserts it; a concurrent one loses the insert and
reads the winner's, so every process signs and verifies with the same key.
"""

from __future__ import annotations

import os
from datetime import datetime

from bson.binary import Binary
from pymongo.errors import DuplicateKeyError

from storage.database import Database

COLLECTION = "signing_keys"
KEY_BYTES = 32


async def signing_key(database: Database, purpose: str, now: datetime) -> bytes:
    """The key for `purpose`, creating it on first use."""
    keys = database[COLLECTION]
    doc = await keys.find_one({"_id": purpose})
    if doc is None:
        try:
            await keys.insert_one({"_id": purpose, "key": Binary(os.urandom(KEY_BYTES)), "created_at": now})
        except DuplicateKeyError:
            pass
        doc = await keys.find_one({"_id": purpose})
    assert doc is not None, "the key was just inserted"
    return bytes(doc["key"])
