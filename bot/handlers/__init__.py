"""Event handlers, one module per event kind, composed into the one router the webhook dispatches to.

Handlers are thin: parse (filters) → call the domain (repositories, linking)
→ answer through `bot.replies`. Event types without a handler are stored and
ignored (the router's "unhandled" outcome).
"""

from __future__ import annotations

from bot.router import Router


def build_router() -> Router:
    from bot.handlers import account_link, follow, message, postback, unfollow

    return Router("bot").include(follow.router, unfollow.router, message.router, postback.router,
                                 account_link.router)
