"""Opt-in pytest plugin: where was the socket behind an `unclosed socket` ResourceWarning created?

    .venv/bin/python -m pytest -p tests.socket_origins [args]

Records a short creation stack (and the running test) for every `socket.socket`, and when one is reported
unraisable (collected unclosed) appends that stack to `socket-origins.txt` in the working directory before
pytest's own hook fails the test that happened to collect it - usually not the test that leaked it.
Costs a stack capture per socket, so it is never on by default.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from typing import Any

import pytest

REPORT = "socket-origins.txt"
_origins: dict[int, tuple[traceback.StackSummary, str | None]] = {}
_original_init = socket.socket.__init__


def _recording_init(self: socket.socket, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    _origins[id(self)] = (traceback.extract_stack(limit=40), os.environ.get("PYTEST_CURRENT_TEST"))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    socket.socket.__init__ = _recording_init  # type: ignore[method-assign]
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.object, socket.socket):
            stack, test = _origins.get(id(unraisable.object), (None, None))
            with open(REPORT, "a", encoding="utf-8") as report:
                report.write(f"=== {unraisable.object!r}\ncollected in {os.environ.get('PYTEST_CURRENT_TEST')}\n"
                             f"created in {test}\n{''.join(stack.format()) if stack else '(no stack)'}\n")
        previous(unraisable)

    sys.unraisablehook = hook
