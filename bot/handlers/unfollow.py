"""unfollow: the user blocked the account. Mark blocked; nothing is pushed to them until they follow again."""

from __future__ import annotations

from bot.handlers.filters import from_user
from bot.router import EventContext, Router

router = Router("unfollow")


@router.on("unfollow", from_user)
async def on_unfollow(ctx: EventContext, user_id: str) -> None:
    ctx.batch.record_unfollow(user_id)
