"""Send endpoints (push/reply/multicast/narrowcast/broadcast) and the small
user-facing endpoints (profile, link token, loading animation, quota).

Checks run in the order that keeps state honest: validation, retry-key
conflict, reply token, quota; only a request that passes all of them is
recorded, consumes its retry key and counts toward the quota.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from . import limits
from .common import REQUEST_ID, LineError, ValidationFailed, channel_of, read_json, state_of
from .state import SimState, iso, message_id, quote_token
from .validation import CHAT_ID_RE, USER_ID_RE, UUID_RE, validate_request

SCHEMAS = {
    "push": "PushMessageRequest",
    "reply": "ReplyMessageRequest",
    "multicast": "MulticastRequest",
    "narrowcast": "NarrowcastRequest",
    "broadcast": "BroadcastRequest",
}
QUOTABLE = frozenset({"text", "textV2", "sticker", "image", "video", "audio", "location"})
INVALID_REPLY_TOKEN = "Invalid reply token"


def _retry_key(request: web.Request, kind: str) -> str | None:
    key = request.headers.get("X-Line-Retry-Key")
    if key is None:
        return None
    if kind not in limits.RETRY_KEY_ENDPOINTS:
        raise LineError(400, "The X-Line-Retry-Key header cannot be specified for this API")
    if not UUID_RE.match(key):
        raise LineError(400, "The value of the X-Line-Retry-Key header is invalid")
    return key.lower()


def _recipient_errors(kind: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    if kind == "push" and not CHAT_ID_RE.match(body["to"]):
        return [("to", "The property, 'to', in the request body is invalid (line: -, column: -)")]
    if kind == "multicast":
        return [(f"to[{i}]", "Invalid user ID") for i, uid in enumerate(body["to"])
                if not isinstance(uid, str) or not USER_ID_RE.match(uid)]
    return []


def _use_reply_token(state: SimState, token: str) -> str | None:
    """Consume a token linesim issued; None if unknown, used or expired."""
    issued = state.reply_tokens.get(token)
    now = state.now()
    if issued is None or issued.used or now - issued.issued_at > state.config.reply_token_ttl:
        raise LineError(400, INVALID_REPLY_TOKEN)
    issued.used = True
    return issued.user_id


def _recipients(state: SimState, kind: str, body: dict[str, Any]) -> str | list[str]:
    if kind == "push":
        return str(body["to"])
    if kind == "multicast":
        return list(body["to"])
    # narrowcast/broadcast: every friend linesim knows of (filters are not simulated)
    return [u.user_id for u in state.users.values() if not u.blocked]


async def send(request: web.Request) -> web.Response:
    """One handler for all five send kinds (route name = kind)."""
    kind = request.match_info.route.name or ""
    state = state_of(request)
    cid, channel = channel_of(request)
    retry_key = _retry_key(request, kind)
    body = await read_json(request)
    if state.config.validate:
        errors = validate_request(SCHEMAS[kind], body)
    else:  # the shape every handler below relies on, nothing more
        needed = "replyToken" if kind == "reply" else "to"
        shaped = isinstance(body, dict) and isinstance(body.get("messages"), list) and needed in body
        errors = [] if shaped else [("messages", "The request body has 1 error(s)")]
    if not errors:
        errors = _recipient_errors(kind, body)
    if errors:
        raise ValidationFailed(errors)
    if retry_key:
        prior = limits.accepted_retry(state, channel, retry_key)
        if prior is not None:
            extra = {"sentMessages": prior.sent_messages} if prior.sent_messages else {}
            raise LineError(409, "The retry key is already accepted",
                            headers={"x-line-accepted-request-id": prior.request_id}, **extra)
    if kind == "reply":
        to: str | list[str] | None = _use_reply_token(state, body["replyToken"])
    else:
        to = _recipients(state, kind, body)
        count = 1 if isinstance(to, str) else len(to)
        if not limits.consume_quota(state, channel, count):
            raise LineError(429, limits.QUOTA_MESSAGE)
    rid = request[REQUEST_ID]
    if isinstance(to, list):
        undelivered = [u for u in to if state.is_blocked(u)]
        delivered = len(undelivered) < len(to) or not to
    else:
        undelivered = []
        delivered = not (to and state.is_blocked(to))
    record: dict[str, Any] = {
        "kind": kind, "to": to, "messages": body["messages"], "retry_key": retry_key,
        "request_id": rid, "at": iso(state.now()), "channel": cid, "delivered": delivered,
    }
    if undelivered:
        record["undelivered"] = undelivered
    state.records.append(record)
    sent = None
    if kind in ("push", "reply"):
        sent = [{"id": message_id(), **({"quoteToken": quote_token()} if m.get("type") in QUOTABLE else {})}
                for m in body["messages"]]
    if retry_key:
        limits.remember_retry(state, channel, retry_key, rid, sent)
    if sent is not None:
        return web.json_response({"sentMessages": sent})
    return web.json_response({}, status=202 if kind == "narrowcast" else 200)


def _user_id_param(request: web.Request) -> str:
    uid = request.match_info["userId"]
    if not USER_ID_RE.match(uid):
        raise LineError(400, "The value for the 'userId' parameter is invalid")
    return uid


async def profile(request: web.Request) -> web.Response:
    uid = _user_id_param(request)
    user = state_of(request).users.get(uid)
    if user is None or user.blocked:
        raise LineError(404, "Not found")
    return web.json_response(user.profile())


async def link_token(request: web.Request) -> web.Response:
    uid = _user_id_param(request)
    token = secrets.token_urlsafe(24)
    _, channel = channel_of(request)
    channel.link_tokens[token] = uid
    return web.json_response({"linkToken": token})


async def loading(request: web.Request) -> web.Response:
    body = await read_json(request)
    errors = validate_request("ShowLoadingAnimationRequest", body)
    if not errors:
        if not USER_ID_RE.match(body["chatId"]):
            errors.append(("chatId", "Invalid chat ID"))
        seconds = body.get("loadingSeconds")
        if seconds is not None and seconds % 5:
            errors.append(("loadingSeconds", "must be a multiple of 5"))
    if errors:
        raise ValidationFailed(errors)
    return web.json_response({}, status=202)


async def quota(request: web.Request) -> web.Response:
    q = limits.quota_for(state_of(request))
    return web.json_response({"type": "none"} if q is None else {"type": "limited", "value": q})


async def quota_consumption(request: web.Request) -> web.Response:
    _, channel = channel_of(request)
    return web.json_response({"totalUsage": limits.usage(state_of(request), channel)})


ROUTES = [
    ("POST", "/v2/bot/message/push", send, "push"),
    ("POST", "/v2/bot/message/reply", send, "reply"),
    ("POST", "/v2/bot/message/multicast", send, "multicast"),
    ("POST", "/v2/bot/message/narrowcast", send, "narrowcast"),
    ("POST", "/v2/bot/message/broadcast", send, "broadcast"),
    ("GET", "/v2/bot/profile/{userId}", profile, "profile"),
    ("POST", "/v2/bot/user/{userId}/linkToken", link_token, "link_token"),
    ("POST", "/v2/bot/chat/loading/start", loading, "loading"),
    ("GET", "/v2/bot/message/quota", quota, "quota"),
    ("GET", "/v2/bot/message/quota/consumption", quota_consumption, "quota_consumption"),
]
