"""A fix for PyMongo's async driver: a connection being opened when its task is cancelled is closed.

`pymongo.asynchronous.pool.Pool.connect` (4.20) leaks what it was opening when
the task calling it is cancelled at the wrong moment: the socket, while
connecting (`pool_shared._async_create_connection` closes it on `OSError` and
`TimeoutError` only), or the whole transport, while it waits for the pool's
lock right after. Such tasks are ours, or the driver's own monitors, which it
cancels whenever a client closes. The leak stays open until the garbage
collector finds it (`ResourceWarning: unclosed socket` / `unclosed transport`,
and a file descriptor held until then).

Opening a connection now runs in its own task that a cancellation does not
interrupt: the cancelled caller returns at once, the opening ends (bounded by
the connect timeout) and the connection it made is closed - the pattern
PyMongo itself uses for the TLS handshake (`_close_late_socket`). Installed by
`storage.database.connect`; if a driver version no longer has `Pool.connect`,
nothing is changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pymongo.asynchronous import pool
from pymongo.monitoring import ConnectionClosedReason

log = logging.getLogger("linecrm.storage")

Connect = Callable[..., Coroutine[Any, Any, Any]]
_closing: set[asyncio.Task[None]] = set()  # closings of connections whose caller was cancelled, until done


def _close_abandoned(opening: asyncio.Future[Any]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    closing = asyncio.ensure_future(opening.result().close_conn(ConnectionClosedReason.ERROR))
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)


def closing_on_cancel(connect: Connect) -> Connect:
    """`Pool.connect`, closing the connection an opening made for a caller cancelled meanwhile."""

    async def connect_closing_on_cancel(self: Any, *args: Any, **kwargs: Any) -> Any:
        opening = asyncio.ensure_future(connect(self, *args, **kwargs))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_abandoned)
            raise

    connect_closing_on_cancel.closes_on_cancel = True  # type: ignore[attr-defined]
    return connect_closing_on_cancel


def install() -> None:
    """Wrap the driver's `Pool.connect` once (idempotent)."""
    connect = getattr(pool.Pool, "connect", None)
    if connect is None:
        log.debug("pymongo's async Pool has no connect: nothing to fix")
        return
    if not getattr(connect, "closes_on_cancel", False):
        setattr(pool.Pool, "connect", closing_on_cancel(connect))  # noqa: B010 (the driver's own class)
