"""A flow defined by the tests only (`flows.pings`): one text message, due when the test says.

It exists to prove the engine is flow-agnostic: it plugs in like browse
reminders (state key, pure plan, retry key), and nothing in the engine names it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from delivery.flow import Intent, delivery_key
from storage.contacts import Lookup
from storage.database import Database, Document

NAME = "pings"


class PingFlow:
    name = NAME
    lookups: tuple[Lookup, ...] = ()

    def owns(self, state_key: str) -> bool:
        return state_key == NAME

    async def prepare(self, database: Database, shop_ids: Collection[str]) -> None:
        return None

    def plan(self, contact: Document, state_key: str, state: Mapping[str, Any], now: datetime) -> Intent:
        number = int(state.get("number") or 1)
        key = delivery_key(str(contact["shop_id"]), str(contact["line_user_id"]), NAME, "c", number)
        return Intent(flow=NAME, state_key=NAME, kind="send", state={"due_at": None, "done": True}, step=number,
                      cycle="c", key=key, due_at=state.get("due_at"),
                      messages=[{"type": "text", "text": f"ping {number}"}], expects={"number": number})
