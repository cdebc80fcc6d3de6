"""Shops (tenants): creation, lookup, API keys.

API keys are random 256-bit secrets; only their SHA-256 is stored, so a
database dump does not hand out admin access. LINE credentials are stored
because we need them to sign and send, but never leave through the API.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from storage.database import Database, Document

API_KEY_PREFIX = "lcrm_"


def new_shop_id() -> str:
    return "shp_" + secrets.token_hex(8)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class LineCredentials:
    channel_secret: str
    channel_access_token: str
    login_channel_id: str | None = None
    login_channel_secret: str | None = None


@dataclass(frozen=True)
class Shop:
    """A tenant as the rest of the code sees it."""

    shop_id: str
    name: str
    timezone: str
    line: LineCredentials
    created_at: datetime
    doc: Document

    @classmethod
    def from_doc(cls, doc: Document) -> Shop:
        line = doc["line"]
        return cls(
            shop_id=doc["_id"],
            name=doc["name"],
            timezone=doc["timezone"],
            line=LineCredentials(
                channel_secret=line["channel_secret"],
                channel_access_token=line["channel_access_token"],
                login_channel_id=line.get("login_channel_id"),
                login_channel_secret=line.get("login_channel_secret"),
            ),
            created_at=doc["created_at"],
            doc=doc,
        )

    def public_view(self) -> dict[str, Any]:
        """The shop without any secret (LINE credentials are write-only)."""
        return {
            "shop_id": self.shop_id,
            "name": self.name,
            "timezone": self.timezone,
            "line_login_channel_id": self.line.login_channel_id,
            "line_credentials_set": True,
            "created_at": self.created_at,
        }


class ShopRepository:
    def __init__(self, database: Database) -> None:
        self._shops = database.shops

    async def create(
        self, *, name: str, timezone: str, line: LineCredentials, now: datetime
    ) -> tuple[Shop, str]:
        """Create a shop; returns it and its API key (shown once, stored hashed)."""
        api_key = new_api_key()
        doc: Document = {
            "_id": new_shop_id(),
            "name": name,
            "timezone": timezone,
            "line": {
                "channel_secret": line.channel_secret,
                "channel_access_token": line.channel_access_token,
                "login_channel_id": line.login_channel_id,
                "login_channel_secret": line.login_channel_secret,
            },
            "api_key_hashes": [hash_api_key(api_key)],
            "created_at": now,
            "updated_at": now,
        }
        await self._shops.insert_one(doc)
        return Shop.from_doc(doc), api_key

    async def get(self, shop_id: str) -> Shop | None:
        doc = await self._shops.find_one({"_id": shop_id})
        return Shop.from_doc(doc) if doc else None

    async def authenticate(self, shop_id: str, api_key: str) -> Shop | None:
        """The shop if `api_key` is one of its current keys (constant-time compare)."""
        shop = await self.get(shop_id)
        if shop is None:
            return None
        presented = hash_api_key(api_key)
        matched = False
        for stored in shop.doc.get("api_key_hashes", []):
            matched |= hmac.compare_digest(stored, presented)
        return shop if matched else None

    async def rotate_api_key(self, shop_id: str, now: datetime) -> str | None:
        """Replace every key of the shop by a new one; the old keys stop working at once."""
        api_key = new_api_key()
        doc = await self._shops.find_one_and_update(
            {"_id": shop_id},
            {"$set": {"api_key_hashes": [hash_api_key(api_key)], "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return api_key if doc else None

    async def update(self, shop_id: str, fields: dict[str, Any], now: datetime) -> Shop | None:
        doc = await self._shops.find_one_and_update(
            {"_id": shop_id},
            {"$set": {**fields, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return Shop.from_doc(doc) if doc else None


FRESH_READ_EVERY = 1.0  # seconds


class ShopCache:
    """Shops by ID, kept in this process for `ttl` seconds: the webhook's signature check needs the
    channel secret on every request, and a read per request is most of the cost of an acknowledgement.

    A changed shop (e.g. a rotated secret) reaches every process within the TTL;
    callers that find a cached value wrong (a signature that does not match)
    ask again with `fresh=True`. Unknown shops are never cached, so a new shop
    works at once. Requests that find the entry expired together share one read.
    """

    def __init__(self, repository: ShopRepository, *, ttl: float = 10.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._repository = repository
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[Shop, float]] = {}
        self._reading: dict[str, asyncio.Future[Shop | None]] = {}  # one read per shop at a time
        self._fresh_at: dict[str, float] = {}

    async def get(self, shop_id: str, *, fresh: bool = False) -> Shop | None:
        """The shop; `fresh` reads it again - at most once a second per shop (bad signatures are cheap to send)."""
        now = self._clock()
        if fresh and now - self._fresh_at.get(shop_id, -FRESH_READ_EVERY) >= FRESH_READ_EVERY:
            self._fresh_at[shop_id] = now
            self._entries.pop(shop_id, None)
            if len(self._fresh_at) > self._max_entries:
                self._fresh_at.clear()
        cached = self._entries.get(shop_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        reading = self._reading.get(shop_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(shop_id))
            self._reading[shop_id] = reading
            reading.add_done_callback(lambda _: self._reading.pop(shop_id, None))
        return await asyncio.shield(reading)

    async def _read(self, shop_id: str) -> Shop | None:
        shop = await self._repository.get(shop_id)
        if shop is None:
            self._entries.pop(shop_id, None)
            return None
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[shop_id] = (shop, self._clock() + self._ttl)
        return shop

    def forget(self, shop_id: str) -> None:
        self._entries.pop(shop_id, None)
