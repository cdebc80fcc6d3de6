"""`python -m scheduler run-once` as operators and black-box tests call it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args], check=False, capture_output=True, text=True, env=env,
        timeout=120,
    )


def test_run_once_prints_a_json_summary(settings: Any) -> None:
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "LINE_API_BASE": settings.line_api_base}
    result = run_cli("run-once", "--now", "2037-12-01T10:00:00+09:00", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["now"] == "2037-12-01T01:00:00+00:00"
    assert isinstance(summary["jobs"], dict)


def test_run_once_refuses_a_naive_time(settings: Any) -> None:
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri}
    result = run_cli("run-once", "--now", "2037-12-01T10:00:00", env=env)
    assert result.returncode == 2 and "offset" in result.stderr


def test_bad_environment_is_named(settings: Any) -> None:
    result = run_cli("run-once", "--now", "2037-12-01T10:00:00+09:00", env={**os.environ, "PORT": "x"})
    assert result.returncode == 2 and "PORT" in result.stderr
