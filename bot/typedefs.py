"""Typed keys for state held on the aiohttp application (no string keys)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from core.clock import Clock
from core.settings import Settings

if TYPE_CHECKING:
    from admin_api.registry import AdminApi
    from core.line_client import LineClients
    from storage.database import Database

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DATABASE: web.AppKey[Database] = web.AppKey("database")
LINE: web.AppKey[LineClients] = web.AppKey("line")
ADMIN_API: web.AppKey[AdminApi] = web.AppKey("admin_api")  # the composed admin routes (the dashboard calls them)
BACKGROUND_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("background_tasks")
