"""What a worker job may use (no globals, everything handed in) and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass

from core.line_client import LineClients
from core.settings import Settings
from storage.database import Database

JobSummary = dict[str, int]  # counts per outcome, printed by `run-once`


@dataclass(frozen=True)
class JobContext:
    database: Database
    line: LineClients
    settings: Settings
    worker_id: str
