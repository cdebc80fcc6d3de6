"""message: keywords (points, history, opt-out/in, link), link codes, otherwise the shop's default reply.

Keywords are checked first (no I/O beyond the shop's settings), then a link
code is handed to the linking package, then the configured default reply (or
silence). Non-text messages are stored and left unhandled.
"""

from __future__ import annotations

import logging

from bot.handlers import actions
from bot.handlers.filters import keyword, text_from_user
from bot.replies import respond
from bot.router import SKIP, EventContext, Router
from core.flex import text_message
from linking.chat_code import redeem_chat_code

log = logging.getLogger("linecrm.handlers")

router = Router("message")


@router.on("message", keyword("points"))
async def on_points_keyword(ctx: EventContext, user_id: str) -> None:
    respond(ctx, await actions.points(ctx, user_id))


@router.on("message", keyword("history"))
async def on_history_keyword(ctx: EventContext, user_id: str) -> None:
    respond(ctx, await actions.history(ctx, user_id))


@router.on("message", keyword("opt_out"))
async def on_opt_out_keyword(ctx: EventContext, user_id: str) -> None:
    respond(ctx, actions.set_opted_out(ctx, user_id, True))


@router.on("message", keyword("opt_in"))
async def on_opt_in_keyword(ctx: EventContext, user_id: str) -> None:
    respond(ctx, actions.set_opted_out(ctx, user_id, False))


@router.on("message", keyword("link"))
async def on_link_keyword(ctx: EventContext, user_id: str) -> None:
    respond(ctx, await actions.link_offer(ctx))


@router.on("message", text_from_user)
async def on_link_code(ctx: EventContext, user_id: str, text: str) -> object:
    outcome = await redeem_chat_code(ctx.db, ctx.shop.shop_id, text, user_id, ctx.now)
    if outcome is None:
        return SKIP  # not a link code: let the default reply answer
    respond(ctx, [text_message(outcome.message)])  # linked, or why the code did not work
    return None


@router.on("message", text_from_user)
async def on_other_text(ctx: EventContext, user_id: str, text: str) -> object:
    reply = (await ctx.messaging()).default_reply
    if reply is None:
        return SKIP  # silence: the event stays "unhandled" in the store
    respond(ctx, [text_message(reply)])
    return None
