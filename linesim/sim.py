"""The `/_sim/*` control routes: inspect sent messages, play LINE users
(webhooks), register users, inject faults, change config, reset."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
from aiohttp import web

from . import limits, webhook
from .common import state_of
from .state import ReplyToken, SimState, User

REDELIVERY_WINDOW = 20 * 60


def _bad(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400)


async def _json(request: web.Request) -> Any:
    try:
        return await request.json() if request.can_read_body else {}
    except ValueError:
        return None


async def messages(request: web.Request) -> web.Response:
    """Accepted send requests, oldest first; filters ?to= ?kind= ?channel=."""
    out = state_of(request).records
    q = request.query
    if "kind" in q:
        out = [r for r in out if r["kind"] == q["kind"]]
    if "channel" in q:
        out = [r for r in out if r["channel"] == q["channel"]]
    if "to" in q:
        out = [r for r in out if r["to"] == q["to"] or (isinstance(r["to"], list) and q["to"] in r["to"])]
    return web.json_response(out)


async def add_user(request: web.Request) -> web.Response:
    data = await _json(request)
    if not isinstance(data, dict) or not isinstance(data.get("user_id"), str):
        return _bad("user_id is required")
    user = state_of(request).user(data["user_id"])
    for key, attr in (("display_name", "display_name"), ("picture_url", "picture_url"),
                      ("language", "language"), ("status_message", "status_message"),
                      ("blocked", "blocked")):
        if key in data:
            setattr(user, attr, data[key])
    return web.json_response({**user.profile(), "blocked": user.blocked}, status=201)


async def list_users(request: web.Request) -> web.Response:
    return web.json_response([{**u.profile(), "blocked": u.blocked}
                              for u in state_of(request).users.values()])


async def add_fault(request: web.Request) -> web.Response:
    data = await _json(request)
    if not isinstance(data, dict) or not (data.get("status") or data.get("latency_ms") or data.get("drop")):
        return _bad("one of status, latency_ms, drop is required")
    limits.add_fault(state_of(request), data)
    return web.json_response({"ok": True}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    state_of(request).faults.clear()
    return web.json_response({"ok": True})


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(state_of(request).config.as_json())


async def put_config(request: web.Request) -> web.Response:
    data = await _json(request)
    if not isinstance(data, dict):
        return _bad("a JSON object is required")
    state = state_of(request)
    state.config.update(data)
    return web.json_response(state.config.as_json())


async def reset(request: web.Request) -> web.Response:
    state_of(request).reset()
    return web.json_response({"ok": True})


def register_event(state: SimState, event: dict[str, Any]) -> None:
    """Issue the event's reply token and update what linesim knows of the user."""
    now = state.now()
    uid = (event.get("source") or {}).get("userId")
    token = event.get("replyToken")
    if token:
        known = state.reply_tokens.get(token)
        if known is None:
            state.reply_tokens[token] = ReplyToken(uid, now, now)
        elif not known.used and now - known.event_at <= REDELIVERY_WINDOW:
            known.issued_at = now  # a redelivered event's token works for another minute
    if uid:
        user = state.users.setdefault(uid, User(uid))
        if event.get("type") == "unfollow":
            user.blocked = True
        elif event.get("type") == "follow":
            user.blocked = False
    if event.get("webhookEventId"):
        state.sent_events[event["webhookEventId"]] = copy.deepcopy(event)


def build_events(state: SimState, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Events from `event`, `events` (short specs or full events) and `redeliver` IDs."""
    items = list(data.get("events") or [])
    if data.get("event"):
        items.append(data["event"])
    events = [dict(item) if "webhookEventId" in item else webhook.event_from_spec(item, state.now())
              for item in items]
    for event_id in data.get("redeliver") or []:
        if event_id not in state.sent_events:
            raise ValueError(f"unknown webhookEventId {event_id}")
        events += webhook.redelivered([state.sent_events[event_id]])
    return events


async def send_webhook(request: web.Request) -> web.Response:
    data = await _json(request)
    if not isinstance(data, dict) or not data.get("url") or data.get("channel_secret") is None:
        return _bad("url and channel_secret are required")
    state = state_of(request)
    try:
        events = build_events(state, data)
    except (ValueError, TypeError) as exc:
        return _bad(str(exc))
    for event in events:
        register_event(state, event)
    destination = data.get("destination", webhook.DEFAULT_DESTINATION)
    try:
        status, body = await webhook.send_webhook(data["url"], data["channel_secret"], events,
                                                  destination, float(data.get("timeout", 10)))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.json_response({"message": f"webhook delivery failed: {exc!r}", "events": events},
                                 status=502)
    return web.json_response({"status": status, "body": body, "events": events})


async def issue_reply_token(request: web.Request) -> web.Response:
    """Issue a reply token without a webhook (for tests that post events themselves)."""
    data = await _json(request)
    if not isinstance(data, dict):
        return _bad("a JSON object is required")
    token = webhook.reply_token()
    register_event(state_of(request), {"replyToken": token,
                                       "source": {"type": "user", "userId": data.get("user_id")}})
    return web.json_response({"replyToken": token}, status=201)


ROUTES = [
    ("GET", "/_sim/messages", messages),
    ("POST", "/_sim/users", add_user),
    ("GET", "/_sim/users", list_users),
    ("POST", "/_sim/faults", add_fault),
    ("DELETE", "/_sim/faults", clear_faults),
    ("GET", "/_sim/config", get_config),
    ("PUT", "/_sim/config", put_config),
    ("POST", "/_sim/reset", reset),
    ("POST", "/_sim/webhook", send_webhook),
    ("POST", "/_sim/reply_tokens", issue_reply_token),
]
