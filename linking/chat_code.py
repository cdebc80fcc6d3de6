"""Chat-code linking: the link page shows a short one-time code bound to the browser.

The page opens LINE with "連携コード: XXXX-XXXX" pre-filled
(`https://line.me/R/oaMessage/{basic ID}/?{text}`); when the bot receives it,
`redeem_chat_code` links the sender to the browser. Codes use Crockford's
base-32 alphabet (no I/L/O/U, so nothing is misread), 8 characters
(about 10^12 values), live 10 minutes, work once and only for their shop.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from aiohttp import web

from bot.typedefs import CLOCK, DATABASE, LINE
from linking.links import LinkOutcome, LinkStatus, link_browser
from linking.login import LinkStart, link_start
from linking.pages import render
from storage.database import Database
from storage.link_tokens import LinkTokenRepository, Redemption, TokenKind, TokenTaken

log = logging.getLogger("linecrm.linking")

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_TTL = timedelta(minutes=10)
MESSAGE_PREFIX = "連携コード: "
# The whole message must be the code (optionally with our prefix): ordinary chat is never taken for one.
_PREFIXED_RE = re.compile(r"^連携コード\s*[:：]?\s*([0-9A-Z]{4})-?([0-9A-Z]{4})$")
_BARE_RE = re.compile(r"^([0-9A-Z]{4})-([0-9A-Z]{4})$")
_MISREAD = str.maketrans({"O": "0", "I": "1", "L": "1"})

_STATUS = {
    Redemption.UNKNOWN: LinkStatus.UNKNOWN,
    Redemption.EXPIRED: LinkStatus.EXPIRED,
    Redemption.USED: LinkStatus.USED,
    Redemption.WRONG_SHOP: LinkStatus.WRONG_SHOP,
}


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def parse_code(text: str) -> str | None:
    """The canonical code in a message, or None when the message is not a link code."""
    normalised = unicodedata.normalize("NFKC", text).strip().upper()
    match = _PREFIXED_RE.match(normalised) or _BARE_RE.match(normalised)
    if not match:
        return None
    code = (match.group(1) + match.group(2)).translate(_MISREAD)
    if any(ch not in ALPHABET for ch in code):
        return None
    return f"{code[:4]}-{code[4:]}"


def oa_message_url(basic_id: str, text: str) -> str:
    return f"https://line.me/R/oaMessage/{quote(basic_id, safe='')}/?{quote(text, safe='')}"


async def issue_chat_code(db: Database, shop_id: str, browser_id: str, now: datetime) -> str:
    tokens = LinkTokenRepository(db)
    for _ in range(5):
        code = new_code()
        try:
            await tokens.issue(TokenKind.CHAT_CODE, code, shop_id, {"browser_id": browser_id}, CODE_TTL, now)
        except TokenTaken:
            continue
        return code
    raise RuntimeError("could not draw an unused chat code")


async def redeem_chat_code(db: Database, shop_id: str, text: str, line_user_id: str, now: datetime) -> LinkOutcome | None:
    """For the webhook: None when the text is no link code; else the outcome (its `.message` is the reply)."""
    code = parse_code(text)
    if code is None:
        return None
    # Redeemed for this user: if we die before the link is written, their event's re-run completes it.
    redeemed = await LinkTokenRepository(db).redeem(TokenKind.CHAT_CODE, code, shop_id, now, line_user_id)
    if not redeemed.ok:
        return LinkOutcome(_STATUS[redeemed.status], shop_id, line_user_id=line_user_id, method="chat_code")
    return await link_browser(db, shop_id, redeemed.data["browser_id"], line_user_id, "chat_code", now)


@dataclass(frozen=True)
class _CachedBasicId:
    basic_id: str | None
    expires: float


# The official account's basic ID per channel, kept by each web process: the code page must not
# call LINE on every hit (it changes practically never; a failed look-up is retried after a minute).
BASIC_IDS: web.AppKey[dict[str, _CachedBasicId]] = web.AppKey("basic_ids", dict)
BASIC_ID_TTL_SECONDS = 3600.0
BASIC_ID_RETRY_SECONDS = 60.0
BASIC_ID_CACHE_MAX = 10_000


async def _basic_id(app: web.Application, shop_id: str, access_token: str) -> str | None:
    """The official account's basic ID ("@xxxx") for the deep link; None if LINE cannot say now."""
    cache = app[BASIC_IDS]
    cached = cache.get(shop_id)
    if cached is not None and cached.expires > time.monotonic():
        return cached.basic_id
    basic_id: str | None = None
    ttl = BASIC_ID_RETRY_SECONDS
    try:
        info = await app[LINE].for_token(access_token).api.get_bot_info()
        basic_id, ttl = (str(info.basic_id) if info.basic_id else None), BASIC_ID_TTL_SECONDS
    except Exception as exc:  # noqa: BLE001 - the page still works: the code can be typed
        log.warning("could not read the bot's basic ID: %r", exc)
    if len(cache) >= BASIC_ID_CACHE_MAX:
        cache.clear()
    cache[shop_id] = _CachedBasicId(basic_id, time.monotonic() + ttl)
    return basic_id


async def code_page(request: web.Request, start: LinkStart) -> web.Response:
    """The page with a fresh code; only ever reached with a redeemed link token (`link_start`)."""
    db = request.app[DATABASE]
    code = await issue_chat_code(db, start.shop.shop_id, start.browser_id, request.app[CLOCK].now())
    text = MESSAGE_PREFIX + code
    basic_id = await _basic_id(request.app, start.shop.shop_id, start.shop.line.channel_access_token)
    return render(
        "code.html",
        code=code,
        message_text=text,
        oa_message_url=oa_message_url(basic_id, text) if basic_id else None,
        return_url=start.return_url,
        ttl_minutes=int(CODE_TTL.total_seconds() // 60),
    )


async def start_code(request: web.Request) -> web.Response:
    start = await link_start(request)
    if isinstance(start, web.Response):
        return start
    return await code_page(request, start)


def setup_chat_code(app: web.Application) -> None:
    app[BASIC_IDS] = {}
    app.router.add_get("/l/{shop_id}/code", start_code)
