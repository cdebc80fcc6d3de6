"""Filters shared by the handler modules: each hands what it found to the handler as keyword arguments."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from bot import postback as postback_format
from bot.router import EventContext

log = logging.getLogger("linecrm.handlers")

KeywordKind = str  # a field of storage.shop_settings.Keywords: points, history, opt_out, opt_in, link


def from_user(ctx: EventContext) -> dict[str, str] | None:
    """One-to-one chats only: the sender's user ID."""
    return {"user_id": ctx.user_id} if ctx.user_id else None


def normalise(text: str) -> str:
    """Full-width/half-width and surrounding spaces do not matter for a keyword (ポイント = ﾎﾟｲﾝﾄ)."""
    return unicodedata.normalize("NFKC", text).strip().casefold()


def keyword(kind: KeywordKind) -> Callable[[EventContext], Awaitable[dict[str, Any] | None]]:
    """A text message that is one of the shop's keywords of this kind."""

    async def check(ctx: EventContext) -> dict[str, Any] | None:
        text = ctx.text
        if text is None or ctx.user_id is None:
            return None
        words = getattr((await ctx.messaging()).keywords, kind)
        if normalise(text) in {normalise(word) for word in words}:
            return {"user_id": ctx.user_id}
        return None

    return check


def text_from_user(ctx: EventContext) -> dict[str, str] | None:
    if ctx.text is None or ctx.user_id is None:
        return None
    return {"user_id": ctx.user_id, "text": ctx.text}


def _parsed(ctx: EventContext) -> postback_format.Postback | postback_format.PostbackError:
    if "postback" not in ctx._cache:
        detail = ctx.event.get("postback")
        data = detail.get("data") if isinstance(detail, dict) else None
        try:
            ctx._cache["postback"] = postback_format.parse(data)
        except postback_format.PostbackError as exc:
            ctx._cache["postback"] = exc
    result: postback_format.Postback | postback_format.PostbackError = ctx._cache["postback"]
    return result


def postback_action(*actions: str) -> Callable[[EventContext], dict[str, Any] | None]:
    """A postback we built, for one of these actions; hands over the parsed payload."""

    def check(ctx: EventContext) -> dict[str, Any] | None:
        parsed = _parsed(ctx)
        if isinstance(parsed, postback_format.PostbackError) or parsed.action not in actions or not ctx.user_id:
            return None
        return {"postback": parsed, "user_id": ctx.user_id}

    return check


def invalid_postback(ctx: EventContext) -> dict[str, Any] | None:
    parsed = _parsed(ctx)
    return {"error": parsed} if isinstance(parsed, postback_format.PostbackError) else None
