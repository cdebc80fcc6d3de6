"""A database connection being opened when its task is cancelled is closed, not left to the garbage collector.

PyMongo's async driver (4.20) leaks the socket, or the transport, it is opening when the task calling it is
cancelled (ours, or the driver's own monitors, which it cancels when a client closes): left open until collected
(`ResourceWarning: unclosed socket/transport`, a file descriptor held meanwhile). `storage.driver_fixes` closes
what such an opening made once it ends. Cancelling 20 reads 2-30 ms after they start hits both moments.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

from storage.database import connect


async def test_connections_cancelled_while_opening_are_closed(mongo_uri: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for attempt in range(40):
            database = connect(mongo_uri, "cancelled_connect")
            reads = [asyncio.ensure_future(database.db["anything"].find_one({})) for _ in range(20)]
            await asyncio.sleep(0.002 + attempt * 0.0007)  # the pool is opening connections for them
            for read in reads:
                read.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            await database.close()
        await asyncio.sleep(0.2)  # connects still under way end, and their sockets are closed
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []
