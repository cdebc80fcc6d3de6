"""accountLink: LINE's account-link result (shop member ID ↔ LINE user); the linking package decides.

A failed link carries neither a reply token nor a source; it is still handed
over so the linking package can close the pending nonce.
"""

from __future__ import annotations

import logging

from bot.replies import respond
from bot.router import EventContext, Router
from core.flex import text_message
from linking.account_link import complete_account_link

log = logging.getLogger("linecrm.handlers")

router = Router("account_link")

LINKED_TEXT = "ショップの会員アカウントとの連携が完了しました。"
FAILED_TEXT = "会員アカウントとの連携ができませんでした。お手数ですが、もう一度お試しください。"


def _link(ctx: EventContext) -> dict[str, str] | None:
    link = ctx.event.get("link")
    if not isinstance(link, dict) or not isinstance(link.get("nonce"), str):
        return None
    result = link.get("result")
    return {"nonce": link["nonce"], "result": result} if result in ("ok", "failed") else None


@router.on("accountLink", _link)
async def on_account_link(ctx: EventContext, nonce: str, result: str) -> None:
    outcome = await complete_account_link(ctx.db, ctx.shop.shop_id, ctx.user_id, nonce, result, ctx.now)
    if ctx.user_id and ctx.reply_token:
        respond(ctx, [text_message(LINKED_TEXT if outcome.ok else FAILED_TEXT)])
