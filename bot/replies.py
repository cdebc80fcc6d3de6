"""Answering a webhook event: reply with the token while it is fresh, otherwise push - exactly once.

A reply token is single-use and lives about a minute. When it is stale (the
event was handled late, e.g. recovered after a crash) or LINE refuses it, we
push instead, with a retry key derived from the webhook event id: a re-run of
the same event can never produce a second message. Once something went out,
the stored event is marked `responded_at`, so a re-run after a crash sends
nothing at all. Never pushes to a blocked customer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from bot.router import EventContext
from core.line_client import InvalidReplyToken, LineClient, MessageLike, SendResult, retry_key_for
from storage.customers import CustomerRepository
from storage.database import Database
from storage.webhook_events import WebhookEventRepository

log = logging.getLogger("linecrm.replies")

# LINE keeps a token about a minute; leave room for the call itself.
REPLY_TOKEN_FRESH_FOR = timedelta(seconds=50)


def response_retry_key(shop_id: str, webhook_event_id: str) -> str:
    return retry_key_for("webhook-response", shop_id, webhook_event_id)


async def push_to_customer(
    db: Database, line: LineClient, shop_id: str, line_user_id: str, messages: Sequence[MessageLike], *, retry_key: str
) -> SendResult | None:
    """Push unless the customer blocked us (LINE would answer 200 and drop it); None when refused."""
    customer = await CustomerRepository(db).get(shop_id, line_user_id)
    if customer is not None and customer.get("blocked"):
        log.info("not pushing to a blocked customer (shop %s)", shop_id)
        return None
    return await line.push(line_user_id, messages, retry_key=retry_key)


async def respond(ctx: EventContext, messages: Sequence[MessageLike]) -> SendResult | None:
    """Answer the event's sender once: reply if the token is fresh, else push with the event's retry key."""
    if not messages or ctx.responded:
        return None
    result: SendResult | None = None
    token = ctx.reply_token
    if token and ctx.now - ctx.received_at < REPLY_TOKEN_FRESH_FOR:
        try:
            result = await ctx.line.reply(token, messages)
        except InvalidReplyToken:
            log.info("reply token refused for event %s; pushing instead", ctx.webhook_event_id)
    if result is None:
        user_id = ctx.user_id
        if user_id is None:
            return None
        result = await push_to_customer(
            ctx.db, ctx.line, ctx.shop.shop_id, user_id, messages,
            retry_key=response_retry_key(ctx.shop.shop_id, ctx.webhook_event_id),
        )
    if result is not None:
        ctx.responded = True
        await WebhookEventRepository(ctx.db).mark_responded(ctx.key, ctx.now)
    return result
