"""THE bulk insert that skips documents whose `_id` (or unique key) already exists.

Idempotent ingest (browser events, webhook events, delivery records) writes a
batch with one unordered `insert_many` and treats duplicate-key errors as
"already stored": on the embedded database that costs a third of the
equivalent upserts. Any other write error, or a write-concern error, is raised:
a batch is never reported stored unless the server acknowledged it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from storage.types import Document

DUPLICATE_KEY = 11000


def only_duplicates(exc: BulkWriteError) -> bool:
    """True when every error of a bulk write is a duplicate key (and the write concern was met)."""
    errors: list[dict[str, Any]] = exc.details.get("writeErrors") or []
    return bool(errors) and all(error.get("code") == DUPLICATE_KEY for error in errors) \
        and not exc.details.get("writeConcernErrors")


async def insert_new(collection: AsyncCollection[Document], docs: Sequence[Document]) -> set[int]:
    """Insert the batch, skipping duplicates; returns the indexes (in `docs`) of the documents stored now."""
    if not docs:
        return set()
    try:
        await collection.insert_many(list(docs), ordered=False)
    except BulkWriteError as exc:
        if not only_duplicates(exc):
            raise
        duplicates = {int(error["index"]) for error in exc.details.get("writeErrors", [])}
        return {index for index in range(len(docs)) if index not in duplicates}
    return set(range(len(docs)))
