"""Opening and closing the database for a process (embedded server or MONGODB_URI)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from storage.database import Database, connect
from storage.embedded import start_embedded
from storage.migrations import run_migrations
from storage.types import IndexSpec


@contextlib.asynccontextmanager
async def open_database(uri: str | None, db_name: str, data_dir: Path,
                        indexes: Sequence[IndexSpec]) -> AsyncIterator[Database]:
    """Connect (starting the embedded server when no URI is given) and ensure the process's indexes."""
    server = None
    if uri is None:
        server = await start_embedded(data_dir)
        server.supervise()  # a dead server is restarted on its files; callers see errors meanwhile
        uri = server.uri
    database = connect(uri, db_name)
    try:
        await database.ensure_indexes(indexes)
        await run_migrations(database)
        yield database
    finally:
        await database.close()
        if server is not None:
            await server.stop()
