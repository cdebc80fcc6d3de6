"""Simulator configuration and in-memory state, kept on the aiohttp app.

Everything a channel owns (rate-limit windows, retry keys, quota usage, rich
menus) is keyed by the channel hash, never by the access token itself, so the
token does not leak into `/_sim/messages` or logs.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class SimConfig:
    """Knobs tests turn. Rate limits are requests/second per endpoint name
    (e.g. "push", "reply", "multicast", "profile"); a value may also be
    `{"limit": n, "window": seconds}` for LINE's per-hour limits."""

    rate_limits: dict[str, Any] = field(default_factory=dict)
    retry_key_retention: float = 24 * 3600
    clock: Callable[[], float] = time.time
    monthly_quota: int | None = None
    reply_token_ttl: float = 60.0
    # Check each send against LINE's OpenAPI schema. Benchmarks may switch it off: the simulator still
    # answers as LINE does (retry keys, quota, rate limits, records) but spends no CPU on the schema.
    validate: bool = True

    def update(self, data: dict[str, Any]) -> None:
        """Apply a `PUT /_sim/config` body (only the known JSON fields)."""
        if "rate_limits" in data:
            self.rate_limits = dict(data["rate_limits"] or {})
        if "monthly_quota" in data:
            self.monthly_quota = data["monthly_quota"]
        if "retry_key_retention" in data:
            self.retry_key_retention = float(data["retry_key_retention"])
        if "reply_token_ttl" in data:
            self.reply_token_ttl = float(data["reply_token_ttl"])
        if "validate" in data:
            self.validate = bool(data["validate"])

    def as_json(self) -> dict[str, Any]:
        return {
            "rate_limits": self.rate_limits,
            "monthly_quota": self.monthly_quota,
            "retry_key_retention": self.retry_key_retention,
            "reply_token_ttl": self.reply_token_ttl,
            "validate": self.validate,
        }


@dataclass
class User:
    user_id: str
    display_name: str = "LINE User"
    picture_url: str | None = None
    language: str | None = "ja"
    status_message: str | None = None
    blocked: bool = False

    def profile(self) -> dict[str, Any]:
        out: dict[str, Any] = {"userId": self.user_id, "displayName": self.display_name}
        if self.picture_url:
            out["pictureUrl"] = self.picture_url
        if self.language:
            out["language"] = self.language
        if self.status_message:
            out["statusMessage"] = self.status_message
        return out


@dataclass
class ReplyToken:
    user_id: str | None
    issued_at: float
    event_at: float
    used: bool = False


@dataclass
class RetryRecord:
    request_id: str
    accepted_at: float
    sent_messages: list[dict[str, Any]] | None


@dataclass
class Fault:
    status: int | None = None
    latency_ms: int = 0
    drop: bool = False
    count: int = 1


@dataclass
class RichMenu:
    body: dict[str, Any]
    image: bytes | None = None
    content_type: str | None = None


@dataclass
class Channel:
    """Per access token state."""

    windows: dict[str, deque[float]] = field(default_factory=dict)
    retry_keys: dict[str, RetryRecord] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)  # "YYYY-MM" -> recipients
    rich_menus: dict[str, RichMenu] = field(default_factory=dict)
    default_rich_menu: str | None = None
    user_rich_menus: dict[str, str] = field(default_factory=dict)  # user ID -> rich menu linked to that user
    link_tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class SimState:
    config: SimConfig
    records: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)
    reply_tokens: dict[str, ReplyToken] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    sent_events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget everything except the configuration."""
        for name in ("records", "users", "reply_tokens", "channels", "faults", "sent_events"):
            getattr(self, name).clear()

    def now(self) -> float:
        return self.config.clock()

    def channel(self, channel_id: str) -> Channel:
        return self.channels.setdefault(channel_id, Channel())

    def user(self, user_id: str) -> User:
        return self.users.setdefault(user_id, User(user_id))

    def is_blocked(self, user_id: str) -> bool:
        u = self.users.get(user_id)
        return bool(u and u.blocked)


def channel_id(token: str) -> str:
    """Short non-reversible name for a channel (hash of its access token)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def month_key(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def request_id() -> str:
    return secrets.token_hex(16)


def message_id() -> str:
    return str(secrets.randbelow(9 * 10**17) + 10**17)


def quote_token() -> str:
    return secrets.token_urlsafe(48)
