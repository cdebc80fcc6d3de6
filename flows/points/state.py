"""Keeps the contacts' points sub-states current at ingest: a ledger write makes the notices look again.

A listener on `points_recorded` (connected in `flows.listeners`), heard after
every points transaction posted (the worker's expiries need no listener: the
expiry reminder wakes at each expiry moment by itself, and the monthly notice
reads the balances when its month comes). It does not decide anything: it
marks the customer's expiry reminder due now (the flow then works out, from
the customer's points, when the next reminder goes) and, after an earn, the
earned notice (the flow announces everything earned since its last notice,
so two earns before a run are one message). One write, the same however
often it runs. While a worker holds the contact it writes nothing and asks the
outbox to run it again later, so a worker settling the contact never
overwrites what the write asked for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flows.points.plan import EARNED, EXPIRY
from storage.contacts import ContactRepository
from storage.database import Database
from storage.signals import RetryLater


async def on_points_recorded(database: Database, shop_id: str, line_user_id: str, types: list[str],
                             now: datetime) -> None:
    states: dict[str, dict[str, Any]] = {EXPIRY: {"due_at": now}}
    if "earn" in types:
        states[EARNED] = {"due_at": now}
    written = await ContactRepository(database).put_flow_states(shop_id, line_user_id, states, due_at=now,
                                                                when={"claim": None})
    if not written:
        raise RetryLater("the contact is held by a worker")
