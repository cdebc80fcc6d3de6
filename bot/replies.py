"""Answering a webhook event: reply with the token while it is fresh, otherwise push - at most once.

Handlers only say what to answer (`respond`); the batch sends it after its
writes are stored (`bot.handling`). A reply token is single-use and lives about
a minute. When it is stale (the event was handled late, e.g. recovered after a
crash) or LINE refuses it, we push instead, with a retry key derived from the
webhook event id: a re-run of the same event can never produce a second push.
Before sending, the stored event records how the answer goes out, and after,
that it went out; a re-run sends nothing once it went out, and never repeats a
reply that may have gone out (a reply has no retry key). Never pushes to a
blocked customer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.router import EventContext
from core.line_client import InvalidReplyToken, LineApiError, LineClient, MessageLike, SendResult, retry_key_for
from storage.customers import CustomerRepository
from storage.database import Database

log = logging.getLogger("linecrm.replies")

# LINE keeps a token about a minute; leave room for the call itself.
REPLY_TOKEN_FRESH_FOR = timedelta(seconds=50)
REPLY, PUSH = "reply", "push"


def response_retry_key(shop_id: str, webhook_event_id: str) -> str:
    return retry_key_for("webhook-response", shop_id, webhook_event_id)


def _as_json(message: MessageLike) -> dict[str, Any]:
    return message if isinstance(message, dict) else dict(message.to_dict())


def respond(ctx: EventContext, messages: Sequence[MessageLike]) -> None:
    """Answer the event's sender once; the batch sends it after its writes are stored."""
    if messages and not ctx.responded:
        ctx.answer = [_as_json(message) for message in messages]


def answer_method(ctx: EventContext, now: datetime, previous: str | None = None) -> str | None:
    """How the answer goes out: reply while the token is fresh, else push; None when there is nobody to push to.

    An earlier attempt that pushed pushes again (same retry key, so LINE drops a repeat).
    """
    if previous != PUSH and ctx.reply_token and now - ctx.received_at < REPLY_TOKEN_FRESH_FOR:
        return REPLY
    return PUSH if ctx.user_id else None


@dataclass(frozen=True)
class Sent:
    """What became of one answer."""

    responded: bool  # it went out (or LINE already had it)
    unsent: bool = False  # it surely did not go out (LINE refused it): a retry may send it
    error: str | None = None


async def send_answer(ctx: EventContext, method: str) -> Sent:
    """Send `ctx.answer` by `method`, falling back from a refused reply token to a push."""
    messages = ctx.answer or []
    try:
        if method == REPLY and ctx.reply_token:
            try:
                await ctx.line.reply_json(ctx.reply_token, messages)
                return Sent(responded=True)
            except InvalidReplyToken:
                log.info("reply token refused for event %s; pushing instead", ctx.webhook_event_id)
        user_id = ctx.user_id
        if user_id is None:
            return Sent(responded=False, unsent=True)
        customer = ctx.batch.customer(user_id)
        if customer is not None and customer.get("blocked"):
            log.info("not pushing to a blocked customer (shop %s)", ctx.shop.shop_id)
            return Sent(responded=False)
        await ctx.line.push_json(user_id, messages,
                                 retry_key=response_retry_key(ctx.shop.shop_id, ctx.webhook_event_id))
        return Sent(responded=True)
    except LineApiError as exc:
        # An answer from LINE (a status) means it was not sent; no answer (timeout) means we cannot know.
        return Sent(responded=False, unsent=exc.status is not None, error=f"{type(exc).__name__}: {exc}")


async def push_to_customer(
    db: Database, line: LineClient, shop_id: str, line_user_id: str, messages: Sequence[MessageLike], *, retry_key: str
) -> SendResult | None:
    """Push unless the customer blocked us (LINE would answer 200 and drop it); None when refused."""
    customer = await CustomerRepository(db).get(shop_id, line_user_id)
    if customer is not None and customer.get("blocked"):
        log.info("not pushing to a blocked customer (shop %s)", shop_id)
        return None
    return await line.push(line_user_id, messages, retry_key=retry_key)
