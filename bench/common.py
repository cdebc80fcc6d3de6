"""What every benchmark needs: a MongoDB for one run (cleaned up afterwards), round-trip counts, memory and CPU
readings, and waiting for a child server's port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from pymongo import monitoring

from storage.database import connect
from storage.embedded import start_embedded


@contextlib.asynccontextmanager
async def bench_database(prefix: str) -> AsyncIterator[tuple[str, str]]:
    """(uri, database name): `MONGODB_URI` if set, else a fresh embedded server; the database is dropped after."""
    uri = os.environ.get("MONGODB_URI")
    db_name = f"{prefix}_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        server = None if uri else await start_embedded(Path(tmp))
        if server is not None:
            uri = server.uri
        assert uri is not None
        try:
            yield uri, db_name
        finally:
            database = connect(uri, db_name)
            with contextlib.suppress(Exception):
                await database.client.drop_database(db_name)
            await database.close()
            if server is not None:
                await server.stop()


def run(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run`, but SIGTERM (e.g. from `timeout`) cancels the benchmark so its clean-up still runs and
    no embedded database server is left behind."""

    async def guarded() -> None:
        task = asyncio.ensure_future(main)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(guarded())


class Commands(monitoring.CommandListener):
    """Counts database round trips, and the time until each answered, by command name while enabled
    (`by_collection`: by command and collection, e.g. "insert webhook_batches")."""

    def __init__(self, *, enabled: bool = False, by_collection: bool = False) -> None:
        self.counts: Counter[str] = Counter()
        self.micros: Counter[str] = Counter()
        self.enabled = enabled
        self.by_collection = by_collection
        self._names: dict[int, str] = {}  # request ID -> name, until it answers

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.enabled:
            return
        name = event.command_name
        if self.by_collection:
            target = event.command.get(name)
            name = f"{name} {target if isinstance(target, str) else ''}".strip()
        self.counts[name] += 1
        self._names[event.request_id] = name

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        name = self._names.pop(event.request_id, event.command_name)
        if self.enabled:
            self.micros[name] += event.duration_micros

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._names.pop(event.request_id, None)


def rss_mb() -> float:
    """This process's resident memory."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU of a process so far (this one by default): who is busy during the run."""
    with open(f"/proc/{pid or os.getpid()}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 60) -> None:
    """Block until something listens on the local `port` (a child server started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


async def await_port(port: int, timeout: float = 60) -> None:
    """`wait_port` without blocking the event loop."""
    await asyncio.to_thread(wait_port, port, timeout)
