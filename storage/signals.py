"""In-process notifications between features, so ingest code need not know who reacts.

E.g. an order recorded by the admin API stops a reminder cycle and is attributed
as a conversion; a product view on a linked browser (re)starts a cycle. A
listener must be idempotent: the same signal may be sent again after a retry.
Listeners are registered at import time by the feature package that owns the
reaction (no I/O at import); `bot.app` and `scheduler` import those packages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("linecrm.signals")

Listener = Callable[..., Awaitable[None]]


class Signal:
    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Listener] = []

    def connect(self, listener: Listener) -> Listener:
        if listener not in self._listeners:
            self._listeners.append(listener)
        return listener

    async def send(self, *args: Any, **kwargs: Any) -> None:
        """Call every listener in order; a failing listener is logged and does not stop the others."""
        for listener in self._listeners:
            try:
                await listener(*args, **kwargs)
            except Exception:
                log.exception("listener %s of %s failed", getattr(listener, "__name__", listener), self.name)


# (database, order: dict, previous: dict | None, now: datetime) after an order is stored or changed.
order_recorded = Signal("order_recorded")
# (database, shop_id: str, browser_id: str, line_user_id: str, now: datetime) after a browser is linked.
browser_linked = Signal("browser_linked")
# (database, shop_id: str, line_user_id: str, product_id: str, viewed_at: datetime) for a linked browser's view.
product_viewed = Signal("product_viewed")
