"""LINE Login (OAuth 2.0 / OpenID Connect v2.1) in the simulator, so linking runs offline.

- `POST /_sim/login_channels` {channel_id, channel_secret}: teach linesim a
  login channel (LINE knows its channels; we must be told).
- `PUT /_sim/login/clock` {"now": ISO 8601 | null}: the time ID tokens are
  issued at (tests run the app on a fixed clock).
- `GET /oauth2/v2.1/authorize`: the consent page. A person or a headless
  browser picks or types a user and presses ログイン; a test may skip the form
  with `&user_id=U…` (and `&add_friend=0`, `&cancel=1`). Redirects to
  `redirect_uri?code=…&state=…&friendship_status_changed=…`.
- `POST /oauth2/v2.1/token`: the code (once, 10 minutes, same client and
  redirect URI) for tokens with an HS256 ID token signed with the channel secret.
- `POST /oauth2/v2.1/verify`: LINE's ID-token verification endpoint.
- `GET /friendship/v1/status`, `GET /v2/bot/info`: what the bot side asks.
"""

from __future__ import annotations

import hashlib
import html
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from aiohttp import web

from .common import CHANNEL, state_of
from .validation import USER_ID_RE

ISSUER = "https://access.line.me"
CODE_TTL = 600
ID_TOKEN_TTL = 3600
ACCESS_TOKEN_TTL = 2_592_000


@dataclass
class Grant:
    channel_id: str
    user_id: str
    redirect_uri: str
    nonce: str | None
    scope: str
    issued_at: float
    used: bool = False


@dataclass
class LoginState:
    channels: dict[str, str] = field(default_factory=dict)  # channel id -> secret
    grants: dict[str, Grant] = field(default_factory=dict)  # authorization code -> grant
    access_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (channel id, user id)
    friends: set[tuple[str, str]] = field(default_factory=set)  # (login channel id, user id)
    offset: float = 0.0


LOGIN: web.AppKey[LoginState] = web.AppKey("linesim_login", LoginState)


def _login(request: web.Request) -> LoginState:
    return request.app[LOGIN]


def _now(request: web.Request) -> float:
    return state_of(request).now() + _login(request).offset


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _page(status: int, body: str) -> web.Response:
    document = (
        "<!doctype html><html lang='ja'><head><meta charset='utf-8'><title>LINE Login (linesim)</title></head>"
        f"<body>{body}</body></html>"
    )
    return web.Response(text=document, status=status, content_type="text/html", charset="utf-8")


def sim_user_id(name: str) -> str:
    """A stable LINE-shaped user ID for a name typed on the consent page."""
    return "U" + hashlib.sha256(name.encode()).hexdigest()[:32]


def id_token(secret: str, channel_id: str, user_id: str, nonce: str | None, now: float, name: str) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": user_id,
        "aud": channel_id,
        "exp": int(now) + ID_TOKEN_TTL,
        "iat": int(now),
        "amr": ["linesso"],
        "name": name,
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return jwt.encode(claims, secret, algorithm="HS256")


async def register_channel(request: web.Request) -> web.Response:
    data = await request.json()
    if not isinstance(data, dict) or not isinstance(data.get("channel_id"), str) \
            or not isinstance(data.get("channel_secret"), str):
        return web.json_response({"message": "channel_id and channel_secret are required"}, status=400)
    _login(request).channels[data["channel_id"]] = data["channel_secret"]
    return web.json_response({"channel_id": data["channel_id"]}, status=201)


async def set_clock(request: web.Request) -> web.Response:
    data = await request.json()
    login = _login(request)
    if not isinstance(data, dict) or "now" not in data:
        return web.json_response({"message": "now is required (ISO 8601 or null)"}, status=400)
    if data["now"] is None:
        login.offset = 0.0
    else:
        try:
            wanted = datetime.fromisoformat(str(data["now"])).timestamp()
        except ValueError:
            return web.json_response({"message": "now must be ISO 8601"}, status=400)
        login.offset = wanted - state_of(request).now()
    return web.json_response({"offset": login.offset})


def _redirect(uri: str, params: dict[str, str]) -> web.Response:
    return web.Response(status=302, headers={"Location": uri + ("&" if "?" in uri else "?") + urlencode(params)})


def _consent_form(request: web.Request) -> web.Response:
    query = request.query
    hidden = "".join(
        f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>" for k, v in query.items()
    )
    users = state_of(request).users.values()
    choices = "".join(
        f"<li><button type='submit' name='user_id' value='{html.escape(u.user_id)}'>"
        f"{html.escape(u.display_name)}</button></li>" for u in users
    )
    body = (
        "<h1>LINE Login (linesim)</h1>"
        f"<form method='get' action='/oauth2/v2.1/authorize' id='consent'>{hidden}"
        f"<ul id='users'>{choices}</ul>"
        "<p><label>表示名 <input name='display_name' id='display_name' value='LINE User'></label></p>"
        "<p><label><input type='checkbox' name='add_friend' value='1' id='add_friend' checked> 友だち追加</label></p>"
        "<p><button type='submit' id='login' name='login' value='1'>ログイン</button>"
        " <button type='submit' id='cancel' name='cancel' value='1'>キャンセル</button></p>"
        "</form>"
    )
    return _page(200, body)


async def authorize(request: web.Request) -> web.StreamResponse:
    query = request.query
    login = _login(request)
    channel_id = query.get("client_id", "")
    redirect_uri = query.get("redirect_uri", "")
    state = query.get("state", "")
    if channel_id not in login.channels:
        return _page(400, "<p>400 Bad Request: invalid client_id</p>")
    if urlsplit(redirect_uri).scheme not in ("http", "https"):
        return _page(400, "<p>400 Bad Request: invalid redirect_uri</p>")
    if query.get("response_type") != "code" or not state or "openid" not in query.get("scope", "").split():
        return _page(400, "<p>400 Bad Request: response_type=code, state and scope=openid are required</p>")
    if query.get("cancel"):
        return _redirect(redirect_uri, {"error": "access_denied",
                                        "error_description": "The resource owner denied the request.",
                                        "state": state})
    user_id = query.get("user_id")
    if not user_id and query.get("login"):
        user_id = sim_user_id(query.get("display_name") or "LINE User")
    if not user_id:
        return _consent_form(request)
    if not USER_ID_RE.match(user_id):
        return _page(400, "<p>400 Bad Request: invalid user_id</p>")
    user = state_of(request).user(user_id)
    if query.get("display_name"):
        user.display_name = query["display_name"]
    code = secrets.token_urlsafe(16)
    login.grants[code] = Grant(channel_id, user_id, redirect_uri, query.get("nonce"), query.get("scope", ""),
                               _now(request))
    befriend = query.get("bot_prompt") in ("normal", "aggressive") and query.get("add_friend", "1") == "1"
    changed = befriend and (channel_id, user_id) not in login.friends
    if befriend:
        login.friends.add((channel_id, user_id))
        user.blocked = False
    return _redirect(redirect_uri, {"code": code, "state": state,
                                    "friendship_status_changed": "true" if changed else "false"})


async def token(request: web.Request) -> web.Response:
    form = await request.post()
    login = _login(request)
    if form.get("grant_type") != "authorization_code":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be authorization_code")
    channel_id = str(form.get("client_id", ""))
    secret = login.channels.get(channel_id)
    if secret is None or not secrets.compare_digest(str(form.get("client_secret", "")), secret):
        return _oauth_error(400, "invalid_client", "invalid client")
    grant = login.grants.get(str(form.get("code", "")))
    now = _now(request)
    if grant is None or grant.used or now - grant.issued_at > CODE_TTL or grant.channel_id != channel_id \
            or grant.redirect_uri != form.get("redirect_uri"):
        return _oauth_error(400, "invalid_grant", "invalid authorization code")
    grant.used = True
    access = secrets.token_urlsafe(32)
    login.access_tokens[access] = (channel_id, grant.user_id)
    name = state_of(request).user(grant.user_id).display_name
    return web.json_response({
        "access_token": access,
        "expires_in": ACCESS_TOKEN_TTL,
        "id_token": id_token(secret, channel_id, grant.user_id, grant.nonce, now, name),
        "refresh_token": secrets.token_urlsafe(16),
        "scope": grant.scope,
        "token_type": "Bearer",
    })


async def verify(request: web.Request) -> web.Response:
    form = await request.post()
    channel_id = str(form.get("client_id", ""))
    secret = _login(request).channels.get(channel_id)
    if secret is None:
        return _oauth_error(400, "invalid_request", "Invalid client_id.")
    try:
        claims = jwt.decode(str(form.get("id_token", "")), secret, algorithms=["HS256"], audience=channel_id,
                            issuer=ISSUER, options={"verify_exp": False})
    except jwt.PyJWTError:
        return _oauth_error(400, "invalid_request", "Invalid IdToken.")
    if claims["exp"] <= _now(request):
        return _oauth_error(400, "invalid_request", "IdToken expired.")
    if "nonce" in form and claims.get("nonce") != form["nonce"]:
        return _oauth_error(400, "invalid_request", "Invalid IdToken Nonce.")
    if "user_id" in form and claims.get("sub") != form["user_id"]:
        return _oauth_error(400, "invalid_request", "Invalid IdToken Subject Identifier.")
    return web.json_response(claims)


async def friendship(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    known = _login(request).access_tokens.get(auth.partition(" ")[2].strip())
    if known is None:
        return _oauth_error(401, "invalid_token", "The access token expired or is invalid.")
    return web.json_response({"friendFlag": known in _login(request).friends})


async def bot_info(request: web.Request) -> web.Response:
    cid = request[CHANNEL]
    return web.json_response({
        "userId": "U" + hashlib.sha256(cid.encode()).hexdigest()[:32],
        "basicId": "@" + cid[:8],
        "displayName": "linesim bot",
        "chatMode": "bot",
        "markAsReadMode": "auto",
    })


PUBLIC_PREFIXES = ("/oauth2/",)  # LINE Login endpoints take no channel access token


def setup(app: web.Application) -> None:
    app[LOGIN] = LoginState()
    app.router.add_post("/_sim/login_channels", register_channel)
    app.router.add_put("/_sim/login/clock", set_clock)
    app.router.add_get("/oauth2/v2.1/authorize", authorize)
    app.router.add_post("/oauth2/v2.1/token", token)
    app.router.add_post("/oauth2/v2.1/verify", verify)
    app.router.add_route("GET", "/friendship/v1/status", friendship, name="friendship")
    app.router.add_route("GET", "/v2/bot/info", bot_info, name="bot_info")

