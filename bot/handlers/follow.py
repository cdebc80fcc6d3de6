"""follow: a new friend or an unblock. Refresh the profile, mark friend, send the welcome message."""

from __future__ import annotations

from bot.handlers import actions
from bot.handlers.filters import from_user
from bot.replies import respond
from bot.router import EventContext, Router

router = Router("follow")


@router.on("follow", from_user)
async def on_follow(ctx: EventContext, user_id: str) -> None:
    profile = await ctx.line.get_profile(user_id)
    detail = ctx.event.get("follow")
    is_unblocked = detail.get("isUnblocked") if isinstance(detail, dict) else None
    ctx.batch.record_follow(user_id, profile, is_unblocked if isinstance(is_unblocked, bool) else None)
    respond(ctx, await actions.welcome(ctx))
