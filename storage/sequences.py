"""Step sequences as merchants define them, and one record per customer run (entries, goals).

`sequences`, `_id` = "<shop_id>:<sequence_id>": shop_id, sequence_id,
  definition (the validated body, `flows.sequences.definition`), gen (a token
  made when the sequence is created: a sequence deleted and created again under
  the same ID is a new sequence, so its old runs end and `reentry: false` starts
  afresh), version (+1 per edit), created_at, updated_at.

`sequence_runs`, `_id` = "<shop_id>:<sequence_id>:<line_user_id>:<run>": one
  document per customer run, written once at entry and once at the goal, for the
  report's "entered" and "goal_reached": shop_id, sequence_id, line_user_id, run,
  gen, trigger, entered_at, goal_at, goal_event, converted (the goal followed a
  message of the run, sent or held back).

The running state of a customer's run lives in their contact (`flows.seq:<id>`,
`storage.contacts`), where the delivery engine reads it.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.database import Database, Document, IndexSpec
from storage.keys import compose

SEQUENCES = "sequences"
RUNS = "sequence_runs"
INDEXES: list[IndexSpec] = [
    IndexSpec(SEQUENCES, [("shop_id", ASCENDING), ("sequence_id", ASCENDING)], "shop_sequence", unique=True),
    IndexSpec(RUNS, [("shop_id", ASCENDING), ("sequence_id", ASCENDING), ("entered_at", ASCENDING)],
              "shop_sequence_entered"),
    IndexSpec(RUNS, [("shop_id", ASCENDING), ("sequence_id", ASCENDING), ("goal_at", ASCENDING)],
              "shop_sequence_goal"),
]


def sequence_key(shop_id: str, sequence_id: str) -> str:
    return compose(shop_id, sequence_id)


def run_key(shop_id: str, sequence_id: str, line_user_id: str, run: str) -> str:
    return compose(shop_id, sequence_id, line_user_id, run)


class SequenceRepository:
    def __init__(self, database: Database) -> None:
        self._sequences = database[SEQUENCES]

    async def put(self, shop_id: str, sequence_id: str, definition: dict[str, Any],
                  now: datetime) -> tuple[Document, Document | None]:
        """Create or replace the definition; returns (the stored document, the one it replaced or None)."""
        update = {"$set": {"definition": definition, "updated_at": now}, "$inc": {"version": 1},
                  "$setOnInsert": {"shop_id": shop_id, "sequence_id": sequence_id, "gen": secrets.token_hex(6),
                                   "created_at": now}}
        try:
            before = await self._sequences.find_one_and_update(
                {"_id": sequence_key(shop_id, sequence_id)}, update, upsert=True,
                return_document=ReturnDocument.BEFORE)
        except DuplicateKeyError:  # created by a concurrent PUT just now: this one is an edit of it
            before = await self._sequences.find_one_and_update(
                {"_id": sequence_key(shop_id, sequence_id)}, update, return_document=ReturnDocument.BEFORE)
        after = await self.get(shop_id, sequence_id)
        assert after is not None
        return after, before

    async def get(self, shop_id: str, sequence_id: str) -> Document | None:
        return await self._sequences.find_one({"_id": sequence_key(shop_id, sequence_id)})

    async def delete(self, shop_id: str, sequence_id: str) -> bool:
        result = await self._sequences.delete_one({"_id": sequence_key(shop_id, sequence_id)})
        return result.deleted_count == 1

    async def of_shop(self, shop_id: str) -> list[Document]:
        return [doc async for doc in self._sequences.find({"shop_id": shop_id}).sort(
            [("shop_id", ASCENDING), ("sequence_id", ASCENDING)])]

    async def for_shops(self, shop_ids: Collection[str]) -> dict[str, list[Document]]:
        """Every sequence of these shops, one indexed read per shop (a run's few shops)."""
        found: dict[str, list[Document]] = {shop_id: [] for shop_id in shop_ids}
        for shop_id in shop_ids:
            found[shop_id] = await self.of_shop(shop_id)
        return found


class SequenceRuns:
    """The per-run records the report counts (written by the ingest listeners, idempotently)."""

    def __init__(self, database: Database) -> None:
        self._runs = database[RUNS]

    async def entered(self, shop_id: str, sequence_id: str, line_user_id: str, run: str, fields: dict[str, Any]) -> None:
        await self._runs.update_one(
            {"_id": run_key(shop_id, sequence_id, line_user_id, run)},
            {"$setOnInsert": {"shop_id": shop_id, "sequence_id": sequence_id, "line_user_id": line_user_id,
                              "run": run, "goal_at": None, **fields}},
            upsert=True)

    async def goal_reached(self, shop_id: str, sequence_id: str, line_user_id: str, run: str, at: datetime,
                           event: str, converted: bool) -> None:
        """Only the first goal of a run counts (a replayed signal changes nothing)."""
        await self._runs.update_one(
            {"_id": run_key(shop_id, sequence_id, line_user_id, run), "goal_at": None},
            {"$set": {"goal_at": at, "goal_event": event, "converted": converted}})

    async def entered_count(self, shop_id: str, sequence_id: str, start: datetime, end: datetime) -> int:
        """Runs that started in [start, end)."""
        return await self._runs.count_documents(
            {"shop_id": shop_id, "sequence_id": sequence_id, "entered_at": {"$gte": start, "$lt": end}})

    async def goal_counts(self, shop_id: str, sequence_id: str, start: datetime, end: datetime) -> tuple[int, int]:
        """(goals reached in [start, end), of which after a message of the run)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"shop_id": shop_id, "sequence_id": sequence_id, "goal_at": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": "$converted", "n": {"$sum": 1}}}]
        counts = {group["_id"]: int(group["n"])
                  async for group in await self._runs.aggregate(pipeline)}
        return sum(counts.values()), counts.get(True, 0)
