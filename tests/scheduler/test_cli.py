"""`python -m scheduler run-once` as operators and black-box tests call it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from pymongo import AsyncMongoClient

from storage import schema


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


async def test_the_worker_alone_ensures_every_index(settings: Any) -> None:
    """The worker may start before the web app ever ran: it must create every index in `storage.schema`."""
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
           "LINE_API_BASE": settings.line_api_base}
    result = run_cli("run-once", "--now", "2037-12-01T10:00:00+09:00", env=env)
    assert result.returncode == 0, result.stderr
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
    try:
        database = client[settings.mongodb_db]
        missing = []
        for spec in schema.INDEXES:
            names = {index["name"] async for index in await database[spec.collection].list_indexes()}
            if spec.name not in names:
                missing.append(f"{spec.collection}.{spec.name}")
    finally:
        await client.close()
    assert len(schema.INDEXES) > 39
    assert missing == []
