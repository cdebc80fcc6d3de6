"""The router: per event type, first passing filter wins, SKIP falls through, explicit unhandled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.router import SKIP, UNHANDLED, EventContext, Router


def _ctx(event: dict[str, Any]) -> EventContext:
    now = datetime(2037, 12, 1, tzinfo=UTC)
    return EventContext(db=None, line=None, shop=None, settings=None, now=now, event=event,  # type: ignore[arg-type]
                        key="k", received_at=now, batch=None)  # type: ignore[arg-type]


async def test_first_matching_handler_wins_and_filters_pass_arguments() -> None:
    calls: list[str] = []
    router = Router("test")

    @router.on("message", lambda ctx: ctx.text == "a" and {"word": "A"})
    async def first(ctx: EventContext, word: str) -> None:
        calls.append("first:" + word)

    async def is_text(ctx: EventContext) -> bool:
        return ctx.text is not None

    @router.on("message", is_text)
    async def second(ctx: EventContext) -> None:
        calls.append("second")

    text = {"type": "message", "message": {"type": "text", "text": "a"}}
    assert str(await router.dispatch(_ctx(text))) == "test_router.first"
    other = {"type": "message", "message": {"type": "text", "text": "b"}}
    assert str(await router.dispatch(_ctx(other))) == "test_router.second"
    assert calls == ["first:A", "second"]


async def test_skip_falls_through_to_children_and_unhandled_is_explicit() -> None:
    parent, child = Router("parent"), Router("child")

    @parent.on("postback")
    async def declines(ctx: EventContext) -> object:
        return SKIP

    @child.on("postback")
    async def takes(ctx: EventContext) -> None:
        return None

    parent.include(child)
    assert (await parent.dispatch(_ctx({"type": "postback"}))).handler == "test_router.takes"
    outcome = await parent.dispatch(_ctx({"type": "beacon"}))
    assert outcome == UNHANDLED and str(outcome) == "unhandled"
    assert parent.event_types() == {"postback"}
