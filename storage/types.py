"""The plain types every storage module shares (kept apart from `database` so `signals` can use them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import IndexModel

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
