"""postback (rich menu areas and our buttons): data in `bot.postback`'s format; anything else is ignored."""

from __future__ import annotations

import logging

from bot.handlers import actions
from bot.handlers.filters import invalid_postback, postback_action
from bot.postback import Postback, PostbackError
from bot.replies import respond
from bot.router import EventContext, Router

log = logging.getLogger("linecrm.handlers")

router = Router("postback")


@router.on("postback", postback_action("points"))
async def on_points(ctx: EventContext, user_id: str, postback: Postback) -> None:
    respond(ctx, await actions.points(ctx, user_id))


@router.on("postback", postback_action("history"))
async def on_history(ctx: EventContext, user_id: str, postback: Postback) -> None:
    respond(ctx, await actions.history(ctx, user_id))


@router.on("postback", postback_action("opt_out", "opt_in"))
async def on_opt(ctx: EventContext, user_id: str, postback: Postback) -> None:
    respond(ctx, actions.set_opted_out(ctx, user_id, postback.action == "opt_out"))


@router.on("postback", postback_action("link"))
async def on_link(ctx: EventContext, user_id: str, postback: Postback) -> None:
    respond(ctx, await actions.link_offer(ctx))


@router.on("postback", invalid_postback)
async def on_invalid(ctx: EventContext, error: PostbackError) -> None:
    """Unknown or tampered data: logged, never an error to the customer."""
    log.warning("ignored postback in shop %s event %s: %s", ctx.shop.shop_id, ctx.webhook_event_id, error)
