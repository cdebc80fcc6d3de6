"""Keyset paging over (time desc, _id desc): stable pages while new documents arrive.

The cursor is "<ISO time>|<_id>" of the last document of the previous page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING

from storage.database import Document


def encode_cursor(at: datetime, key: str) -> str:
    return f"{at.isoformat()}|{key}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError when the cursor is not one of ours."""
    at, sep, key = cursor.partition("|")
    if not sep or not key:
        raise ValueError("malformed cursor")
    parsed = datetime.fromisoformat(at)
    if parsed.tzinfo is None:
        raise ValueError("malformed cursor")
    return parsed, key


async def newest_first_page(
    collection: Any, query: dict[str, Any], time_field: str, after: str | None, limit: int
) -> list[Document]:
    """Keyset paging by (time desc, _id desc) as two indexed range scans (the engine cannot index `$or`)."""
    if after is None:
        cursor = collection.find(query).sort([(time_field, DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [doc async for doc in cursor]
    at, key = decode_cursor(after)
    ties = collection.find({**query, time_field: at, "_id": {"$lt": key}}).sort("_id", DESCENDING).limit(limit)
    page = [doc async for doc in ties]
    if len(page) < limit:
        older = collection.find({**query, time_field: {"$lt": at}}).sort([(time_field, DESCENDING), ("_id", DESCENDING)])
        page += [doc async for doc in older.limit(limit - len(page))]
    return page
