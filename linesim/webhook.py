"""Webhook events as LINE sends them, and signed delivery to a bot.

Factories build events that are complete per webhook.yml, because
line-bot-sdk silently turns incomplete events into `UnknownEvent`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import aiohttp

DEFAULT_DESTINATION = "U" + "0" * 32
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(ts: float | None = None) -> str:
    """26-char ULID (48-bit ms timestamp + 80 random bits, Crockford base32)."""
    ms = int((time.time() if ts is None else ts) * 1000)
    value = (ms << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def reply_token() -> str:
    return secrets.token_hex(16)


def _base(event_type: str, user_id: str | None, ts: float | None, reply: bool) -> dict[str, Any]:
    now = time.time() if ts is None else ts
    event: dict[str, Any] = {
        "type": event_type,
        "mode": "active",
        "timestamp": int(now * 1000),
        "webhookEventId": ulid(now),
        "deliveryContext": {"isRedelivery": False},
    }
    if user_id is not None:
        event["source"] = {"type": "user", "userId": user_id}
    if reply:
        event["replyToken"] = reply_token()
    return event


def follow_event(user_id: str, is_unblocked: bool = False, ts: float | None = None) -> dict[str, Any]:
    event = _base("follow", user_id, ts, reply=True)
    event["follow"] = {"isUnblocked": is_unblocked}
    return event


def unfollow_event(user_id: str, ts: float | None = None) -> dict[str, Any]:
    """The user blocked the account: no reply token."""
    return _base("unfollow", user_id, ts, reply=False)


def text_message_event(user_id: str, text: str, ts: float | None = None) -> dict[str, Any]:
    event = _base("message", user_id, ts, reply=True)
    event["message"] = {
        "type": "text",
        "id": str(secrets.randbelow(9 * 10**17) + 10**17),
        "text": text,
        "quoteToken": secrets.token_urlsafe(48),
        "markAsReadToken": secrets.token_urlsafe(24),
    }
    return event


def postback_event(user_id: str, data: str, params: dict[str, str] | None = None,
                   ts: float | None = None) -> dict[str, Any]:
    event = _base("postback", user_id, ts, reply=True)
    event["postback"] = {"data": data}
    if params:
        event["postback"]["params"] = params
    return event


def account_link_event(user_id: str, nonce: str, result: str = "ok",
                       ts: float | None = None) -> dict[str, Any]:
    """A failed link carries neither reply token nor source (as LINE sends it)."""
    ok = result == "ok"
    event = _base("accountLink", user_id if ok else None, ts, reply=ok)
    event["link"] = {"result": result, "nonce": nonce}
    return event


def redelivered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Same events (same IDs and reply tokens) marked `isRedelivery: true`."""
    out = copy.deepcopy(events)
    for event in out:
        event["deliveryContext"] = {"isRedelivery": True}
    return out


def event_from_spec(spec: dict[str, Any], ts: float | None = None) -> dict[str, Any]:
    """Build an event from the short `/_sim/webhook` form, e.g.
    `{"type": "text", "user_id": "U...", "text": "hi"}`."""
    kind, uid = spec.get("type"), str(spec.get("user_id") or "")
    if kind == "follow":
        event = follow_event(uid, bool(spec.get("is_unblocked")), ts)
    elif kind == "unfollow":
        event = unfollow_event(uid, ts)
    elif kind in ("text", "message"):
        event = text_message_event(uid, spec.get("text", ""), ts)
    elif kind == "postback":
        event = postback_event(uid, spec.get("data", ""), spec.get("params"), ts)
    elif kind == "accountLink":
        event = account_link_event(uid, spec.get("nonce", ""), spec.get("result", "ok"), ts)
    else:
        raise ValueError(f"unknown event type {kind!r}")
    if spec.get("redelivery"):
        event["deliveryContext"] = {"isRedelivery": True}
    return event


def webhook_body(events: list[dict[str, Any]], destination: str = DEFAULT_DESTINATION) -> bytes:
    return json.dumps({"destination": destination, "events": events},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(body: bytes, channel_secret: str) -> str:
    """LINE's `x-line-signature`: base64(HMAC-SHA256(secret, raw body))."""
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


async def send_webhook(bot_url: str, channel_secret: str, events: list[dict[str, Any]],
                       destination: str = DEFAULT_DESTINATION,
                       timeout: float = 10.0) -> tuple[int, Any]:
    """POST signed events to the bot; returns (status, JSON body or text)."""
    body = webhook_body(events, destination)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "x-line-signature": sign(body, channel_secret),
        "User-Agent": "LineBotWebhook/2.0",
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
            session.post(bot_url, data=body, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text) if text else None
        except ValueError:
            return resp.status, text
