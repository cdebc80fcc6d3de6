"""A fix for PyMongo's async driver: a connection being opened when its task is cancelled is closed.

`pymongo.pool_shared._async_create_connection` (4.20) closes the socket it is
connecting on `OSError` and `TimeoutError` only. A task cancelled mid-connect -
one of ours, or one of the driver's monitors, which it cancels whenever a
client closes - leaves that socket open until the garbage collector finds it
(`ResourceWarning: unclosed socket`, and a file descriptor held until then).

The connect now runs in its own task that a cancellation does not interrupt:
the caller is cancelled at once, the connect ends (bounded by the connect
timeout) and its socket is closed then - the pattern PyMongo itself uses for
the TLS handshake (`_close_late_socket`). Installed by `storage.database.connect`;
if a driver version no longer has the function, nothing is changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from pymongo import pool_shared

log = logging.getLogger("linecrm.storage")

Connect = Callable[[Any, Any], Coroutine[Any, Any, socket.socket]]


def _close_when_done(connect: asyncio.Future[socket.socket]) -> None:
    if not connect.cancelled() and connect.exception() is None:
        with contextlib.suppress(OSError):
            connect.result().close()


def closing_on_cancel(create: Connect) -> Connect:
    """`create` (the driver's connect), closing the socket of a connect whose caller was cancelled."""

    async def create_connection(address: Any, options: Any) -> socket.socket:
        connect = asyncio.ensure_future(create(address, options))
        try:
            return await asyncio.shield(connect)
        except asyncio.CancelledError:
            connect.add_done_callback(_close_when_done)
            raise

    create_connection.closes_on_cancel = True  # type: ignore[attr-defined]
    return create_connection


def install() -> None:
    """Wrap the driver's connect once (idempotent)."""
    create = getattr(pool_shared, "_async_create_connection", None)
    if create is None:
        log.debug("pymongo has no _async_create_connection: nothing to fix")
        return
    if not getattr(create, "closes_on_cancel", False):
        setattr(pool_shared, "_async_create_connection", closing_on_cancel(create))  # noqa: B010 (a private name)
