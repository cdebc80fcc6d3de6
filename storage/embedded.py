"""The embedded database: a SecantusDB server run as a child process.

Used when `MONGODB_URI` is unset. SecantusDB speaks MongoDB's wire protocol on
WiredTiger; we talk to it only over a loopback socket, with the same driver as
production. WiredTiger locks its directory, so one server serves one
`DATA_DIR`: the first process starts it and records its port in
`DATA_DIR/embedded-db.json`; later processes on the same `DATA_DIR` connect to
that server instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("linecrm.storage")

STARTUP_TIMEOUT_SECONDS = 60.0


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be started or reached."""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command() -> list[str]:
    """The `secantusd-py` launcher installed beside this interpreter."""
    beside = Path(sys.executable).parent / "secantusd-py"
    found = str(beside) if beside.exists() else shutil.which("secantusd-py")
    if found is None:
        raise EmbeddedDatabaseError("secantusd-py not found: install requirements.txt (SecantusDB)")
    return [found]


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


RESTART_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # bounded: the last one repeats


@dataclass
class EmbeddedServer:
    """A running SecantusDB server, owned by this process or shared with another."""

    port: int
    process: asyncio.subprocess.Process | None
    data_dir: Path
    storage_path: str | None = None
    test_commands: bool = False
    restarts: int = 0
    _stopping: bool = False
    _supervisor: asyncio.Task[None] | None = None

    def supervise(self) -> None:
        """Restart the server on the same files and port whenever it dies (bounded back-off), until `stop`.

        The driver reconnects to the same address by itself, so every process resumes
        without an operator; meanwhile database calls fail fast and /healthz says 503.
        """
        if self.process is not None and self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._watch(), name="embedded-db-supervisor")

    async def _watch(self) -> None:
        failures = 0
        while not self._stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self._stopping:
                return
            log.error("embedded database exited with %s; restarting it on the same files", code)
            while not self._stopping:
                delay = RESTART_BACKOFF_SECONDS[min(failures, len(RESTART_BACKOFF_SECONDS) - 1)]
                await asyncio.sleep(delay)
                try:
                    self.process = await _launch(self.data_dir, self.port, self._path, self.test_commands)
                    await _wait_until_up(self.process, self.port, self.data_dir)
                except (EmbeddedDatabaseError, OSError) as exc:
                    failures += 1
                    log.error("embedded database restart failed (attempt %d): %s", failures, exc)
                    continue
                self.restarts += 1
                failures = 0
                if self.storage_path is None:
                    (self.data_dir / "embedded-db.json").write_text(json.dumps({"pid": self.process.pid,
                                                                                  "port": self.port}))
                log.warning("embedded database restarted on port %s", self.port)
                break

    @property
    def _path(self) -> str:
        return self.storage_path or str((self.data_dir / "db").resolve())

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    async def stop(self) -> None:
        """Stop the server if this process started it (SIGTERM, then SIGKILL after 15 s)."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout=15)
        except TimeoutError:
            log.warning("embedded database did not stop in time; killing it")
            self.process.kill()
            await self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "embedded-db.json").unlink()
        log.info("embedded database stopped")


@contextlib.contextmanager
def _dir_lock(data_dir: Path) -> Iterator[None]:
    with open(data_dir / "embedded-db.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def start_embedded(
    data_dir: Path, *, test_commands: bool = False, storage_path: str | None = None
) -> EmbeddedServer:
    """Start (or join) the SecantusDB server for `data_dir` and wait until it accepts connections."""
    data_dir.mkdir(parents=True, exist_ok=True)
    record = data_dir / "embedded-db.json"
    with _dir_lock(data_dir):
        if storage_path is None and record.exists():
            try:
                info = json.loads(record.read_text())
                if _pid_alive(int(info["pid"])) and await _port_open(int(info["port"])):
                    log.info("joining the embedded database already running on port %s", info["port"])
                    return EmbeddedServer(port=int(info["port"]), process=None, data_dir=data_dir)
            except (ValueError, KeyError, OSError):
                pass
        port = free_port()
        path = storage_path or str((data_dir / "db").resolve())
        process = await _launch(data_dir, port, path, test_commands)
        server = EmbeddedServer(port=port, process=process, data_dir=data_dir, storage_path=storage_path,
                                test_commands=test_commands)
        try:
            await _wait_until_up(process, port, data_dir)
        except EmbeddedDatabaseError:
            await server.stop()
            raise
        if storage_path is None:
            record.write_text(json.dumps({"pid": process.pid, "port": port}))
        log.info("embedded database started on 127.0.0.1:%s (files in %s)", port, path)
        return server


async def _launch(data_dir: Path, port: int, path: str, test_commands: bool) -> asyncio.subprocess.Process:
    args = [*server_command(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", path]
    args += ["--log-level", "WARNING"]
    if test_commands:
        args.append("--enable-test-commands")
    log_file = open(data_dir / "embedded-db.log", "ab")  # noqa: SIM115, ASYNC230 - start-up only; handed to the child
    try:
        return await asyncio.create_subprocess_exec(*args, stdout=log_file, stderr=log_file,
                                                    stdin=asyncio.subprocess.DEVNULL)
    finally:
        log_file.close()


async def _wait_until_up(process: asyncio.subprocess.Process, port: int, data_dir: Path) -> None:
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_SECONDS
    while not await _port_open(port):
        if process.returncode is not None:
            raise EmbeddedDatabaseError(
                f"embedded database exited with {process.returncode}; see {data_dir / 'embedded-db.log'}"
            )
        if asyncio.get_running_loop().time() > deadline:
            process.kill()
            await process.wait()
            raise EmbeddedDatabaseError("embedded database did not start within 60 s")
        await asyncio.sleep(0.1)
