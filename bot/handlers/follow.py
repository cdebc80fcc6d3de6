"""follow: a new friend or an unblock. Refresh the profile, mark friend, send the welcome message."""

from __future__ import annotations

from bot.handlers import actions
from bot.handlers.filters import from_user
from bot.replies import respond
from bot.router import EventContext, Router
from storage.customers import CustomerRepository

router = Router("follow")


@router.on("follow", from_user)
async def on_follow(ctx: EventContext, user_id: str) -> None:
    profile = await ctx.line.get_profile(user_id)
    detail = ctx.event.get("follow")
    is_unblocked = detail.get("isUnblocked") if isinstance(detail, dict) else None
    unblocked = is_unblocked if isinstance(is_unblocked, bool) else None
    await CustomerRepository(ctx.db).record_follow(ctx.shop.shop_id, user_id, profile, unblocked, ctx.now)
    # After the write: a crash in between re-runs this handler (the stored webhook event is recovered).
    await ctx.db.signals.customer_followed.send(ctx.db, ctx.shop.shop_id, user_id, unblocked, ctx.now, now=ctx.now)
    await respond(ctx, await actions.welcome(ctx))
