"""Typed keys for state held on the aiohttp application (no string keys)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from core.clock import Clock
from core.settings import Settings

if TYPE_CHECKING:
    from core.line_client import LineClients
    from storage.database import Database

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DATABASE: web.AppKey[Database] = web.AppKey("database")
LINE: web.AppKey[LineClients] = web.AppKey("line")
BACKGROUND_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("background_tasks")
