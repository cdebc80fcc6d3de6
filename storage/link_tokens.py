"""One-time, short-lived, shop-bound tokens of the linking flows.

`link_tokens`, `_id` = SHA-256 of (kind, secret): kind (login_state | chat_code |
account_nonce | link_token), shop_id, data {browser_id, nonce, return_url, shop_customer_id…},
created_at, expires_at (a TTL index deletes it later), used, used_at, used_by (the
LINE user it was redeemed for, when one: their retry after a crash completes the link).

Only the hash of the secret is stored, so a database dump cannot complete a
link. Consumption is one atomic `update_one` with a `used: False` precondition:
of two concurrent redemptions exactly one sees `modified_count == 1`.
A failed redemption says why (unknown, expired, used, another shop), so the
page or reply can be clear.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from core.clock import as_utc
from storage.database import Database, IndexSpec
from storage.keys import settings_key

INDEXES: list[IndexSpec] = [
    IndexSpec("link_tokens", [("expires_at", ASCENDING)], "expiry", expire_after_seconds=0),
]


class TokenKind(enum.StrEnum):
    LOGIN_STATE = "login_state"
    CHAT_CODE = "chat_code"
    ACCOUNT_NONCE = "account_nonce"
    LINK_TOKEN = "link_token"  # proof that a browser asked to be linked (`linking.link_token`)


class Redemption(enum.StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"
    WRONG_SHOP = "wrong_shop"


@dataclass(frozen=True)
class Redeemed:
    status: Redemption
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status is Redemption.OK


def token_hash(kind: TokenKind, secret: str) -> str:
    return hashlib.sha256(f"{kind.value}\x1f{secret}".encode()).hexdigest()


class TokenTaken(Exception):
    """The secret already exists (only plausible for short chat codes): draw another."""


class LinkTokenRepository:
    def __init__(self, database: Database) -> None:
        self._tokens = database["link_tokens"]

    async def issue(
        self, kind: TokenKind, secret: str, shop_id: str, data: dict[str, Any], ttl: timedelta, now: datetime
    ) -> None:
        doc = {
            "_id": token_hash(kind, secret),
            "kind": kind.value,
            "shop_id": shop_id,
            "data": data,
            "created_at": now,
            "expires_at": now + ttl,
            "used": False,
            "used_at": None,
        }
        try:
            await self._tokens.insert_one(doc)
        except DuplicateKeyError:
            raise TokenTaken from None

    async def redeem(
        self, kind: TokenKind, secret: str, shop_id: str, now: datetime, redeemer: str | None = None
    ) -> Redeemed:
        """Consume the token once, for this shop, before it expires.

        With a `redeemer` (the LINE user sending a chat code or completing an account link), the
        token is consumed *for* them: when the same redeemer comes again (a crash between this
        write and the link it guards, then recovery re-running the event) it is OK again, so the
        link is completed instead of "already used". Anyone else gets USED.
        """
        key = token_hash(kind, secret)
        doc = await self._tokens.find_one({"_id": key})
        if doc is None:
            return Redeemed(Redemption.UNKNOWN, {})
        if doc["shop_id"] != shop_id:
            return Redeemed(Redemption.WRONG_SHOP, {})
        if doc.get("used"):
            if redeemer is not None and doc.get("used_by") == redeemer:
                return Redeemed(Redemption.OK, dict(doc["data"]))
            return Redeemed(Redemption.USED, {})
        if as_utc(doc["expires_at"]) <= now:
            return Redeemed(Redemption.EXPIRED, {})
        result = await self._tokens.update_one(
            {"_id": key, "shop_id": shop_id, "used": False, "expires_at": {"$gt": now}},
            {"$set": {"used": True, "used_at": now, "used_by": redeemer}},
        )
        if result.modified_count != 1:  # a concurrent redemption won (perhaps our own retry: look again)
            again = await self._tokens.find_one({"_id": key}, {"used_by": 1})
            if redeemer is not None and again is not None and again.get("used_by") == redeemer:
                return Redeemed(Redemption.OK, dict(doc["data"]))
            return Redeemed(Redemption.USED, {})
        return Redeemed(Redemption.OK, dict(doc["data"]))


class AccountLinkConfigRepository:
    """Where the shop's own login page for LINE's account link lives (kept beside the shop settings)."""

    def __init__(self, database: Database) -> None:
        self._settings = database["shop_settings"]

    async def get_login_url(self, shop_id: str) -> str | None:
        doc = await self._settings.find_one({"_id": settings_key(shop_id, "account_link")})
        return doc["data"].get("login_url") if doc else None

    async def set_login_url(self, shop_id: str, login_url: str | None, now: datetime) -> None:
        await self._settings.update_one(
            {"_id": settings_key(shop_id, "account_link")},
            {"$set": {"shop_id": shop_id, "section": "account_link", "data": {"login_url": login_url},
                      "updated_at": now}},
            upsert=True,
        )
