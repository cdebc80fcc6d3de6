"""One small event router: handlers register per webhook event type; the first whose filters pass wins.

Modelled on aiogram's Router: each module in `bot/handlers/` owns a `Router`,
they are composed in `bot.handlers.build_router()`, and dispatch returns an
explicit `Outcome` ("unhandled" included) instead of None. A filter is a small
(async or sync) callable over the `EventContext`; it returns False/None to
refuse, True to accept, or a dict that is passed to the handler as keyword
arguments (so e.g. a postback filter hands over the parsed payload and the
handler never re-parses). A handler may return `SKIP` to let the next one try.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.batch import Batch
from core.line_client import LineClient
from core.settings import Settings
from storage.database import Database
from storage.shop_settings import MessagingSettings
from storage.shops import Shop

log = logging.getLogger("linecrm.router")


@dataclass
class EventContext:
    """Everything a handler may use for one stored webhook event; nothing global."""

    db: Database
    line: LineClient
    shop: Shop
    settings: Settings
    now: datetime
    event: dict[str, Any]
    key: str  # the stored event's _id
    received_at: datetime
    batch: Batch  # what the events handled together share (customers, settings, pending writes)
    responded: bool = False  # a message already went out for this event (set after a crash re-run)
    answer: list[dict[str, Any]] | None = None  # what to send the sender, set by `bot.replies.respond`
    _cache: dict[str, Any] = field(default_factory=dict)  # this event only

    @property
    def type(self) -> str:
        return str(self.event.get("type", ""))

    @property
    def webhook_event_id(self) -> str:
        return str(self.event.get("webhookEventId", ""))

    @property
    def user_id(self) -> str | None:
        source = self.event.get("source")
        if isinstance(source, dict) and source.get("type") == "user":
            user = source.get("userId")
            return user if isinstance(user, str) else None
        return None

    @property
    def reply_token(self) -> str | None:
        token = self.event.get("replyToken")
        return token if isinstance(token, str) and token else None

    @property
    def text(self) -> str | None:
        """The text of a text message event, else None."""
        message = self.event.get("message")
        if isinstance(message, dict) and message.get("type") == "text" and isinstance(message.get("text"), str):
            return str(message["text"])
        return None

    async def messaging(self) -> MessagingSettings:
        """The shop's messaging settings, read once per batch of events."""
        return await self.batch.messaging()


Filter = Callable[[EventContext], "bool | dict[str, Any] | None | Awaitable[bool | dict[str, Any] | None]"]
Handler = Callable[..., Awaitable[Any]]


class _Skip:
    def __repr__(self) -> str:
        return "SKIP"


SKIP = _Skip()


@dataclass(frozen=True)
class Outcome:
    handled: bool
    handler: str | None = None

    def __str__(self) -> str:
        return self.handler if self.handled and self.handler else "unhandled"


UNHANDLED = Outcome(False)


@dataclass(frozen=True)
class _Registration:
    handler: Handler
    filters: tuple[Filter, ...]

    @property
    def name(self) -> str:
        return f"{self.handler.__module__.rsplit('.', 1)[-1]}.{self.handler.__name__}"


async def _check(filter_: Filter, ctx: EventContext) -> dict[str, Any] | None:
    result = filter_(ctx)
    if inspect.isawaitable(result):
        result = await result
    if result is None or result is False:
        return None
    return result if isinstance(result, dict) else {}


class Router:
    """Handlers by event type, tried in registration order; included routers after our own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[str, list[_Registration]] = {}
        self._children: list[Router] = []

    def on(self, event_type: str, *filters: Filter) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._handlers.setdefault(event_type, []).append(_Registration(handler, filters))
            return handler

        return register

    def include(self, *routers: Router) -> Router:
        self._children.extend(routers)
        return self

    def event_types(self) -> set[str]:
        types = set(self._handlers)
        for child in self._children:
            types |= child.event_types()
        return types

    async def dispatch(self, ctx: EventContext) -> Outcome:
        for registration in self._handlers.get(ctx.type, []):
            kwargs: dict[str, Any] = {}
            for filter_ in registration.filters:
                passed = await _check(filter_, ctx)
                if passed is None:
                    break
                kwargs.update(passed)
            else:
                if await registration.handler(ctx, **kwargs) is SKIP:
                    continue
                return Outcome(True, registration.name)
        for child in self._children:
            outcome = await child.dispatch(ctx)
            if outcome.handled:
                return outcome
        return UNHANDLED
