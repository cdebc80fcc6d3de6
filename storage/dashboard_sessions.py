"""Signed-in dashboard sessions: `dashboard_sessions`.

Document (`_id` = SHA-256 of the session token): shop_id, key_hash (the hash of
the API key the merchant signed in with), csrf (the token every form of the
session must carry), created_at, expires_at (a TTL index deletes it later).

Only the token's hash is stored, so a database dump cannot sign anyone in.
A session ends when it expires, when the merchant signs out (deleted), and when
the shop's API keys are rotated (its key hash is no longer one of the shop's).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo import ASCENDING

from core.clock import as_utc
from storage.database import Database, IndexSpec

SESSIONS = "dashboard_sessions"
INDEXES: list[IndexSpec] = [
    IndexSpec(SESSIONS, [("expires_at", ASCENDING)], "expiry", expire_after_seconds=0),
]


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    shop_id: str
    key_hash: str
    csrf: str
    expires_at: datetime


class DashboardSessions:
    def __init__(self, database: Database) -> None:
        self._sessions = database[SESSIONS]

    async def start(self, shop_id: str, key_hash: str, now: datetime, ttl: timedelta) -> tuple[str, Session]:
        """A new session (a new token every sign-in: nothing carried over); returns its token once."""
        token = secrets.token_urlsafe(32)
        session = Session(shop_id, key_hash, secrets.token_urlsafe(32), now + ttl)
        await self._sessions.insert_one({"_id": session_hash(token), "shop_id": shop_id, "key_hash": key_hash,
                                         "csrf": session.csrf, "created_at": now, "expires_at": session.expires_at})
        return token, session

    async def get(self, token: str, now: datetime) -> Session | None:
        """The live session of this token; None when unknown, ended or expired (by our clock, not the TTL's)."""
        doc = await self._sessions.find_one({"_id": session_hash(token)})
        if doc is None or as_utc(doc["expires_at"]) <= now:
            return None
        return Session(doc["shop_id"], doc["key_hash"], doc["csrf"], as_utc(doc["expires_at"]))

    async def end(self, token: str) -> None:
        await self._sessions.delete_one({"_id": session_hash(token)})
