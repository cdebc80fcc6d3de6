"""Typed keys for state held on the aiohttp application (no string keys)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from core.clock import Clock
from core.settings import Settings

if TYPE_CHECKING:
    from admin_api.registry import AdminApi
    from bot.closer import BatchCloser
    from bot.handling import Ownership
    from bot.pipeline import HandlingPipeline
    from core.line_client import LineClients
    from storage.database import Database
    from storage.group_commit import GroupCommit
    from storage.shops import ShopCache
    from storage.types import Document

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DATABASE: web.AppKey[Database] = web.AppKey("database")
LINE: web.AppKey[LineClients] = web.AppKey("line")
SHOPS: web.AppKey[ShopCache] = web.AppKey("shops")
WEBHOOK_PIPELINE: web.AppKey[HandlingPipeline] = web.AppKey("webhook_pipeline")
WEBHOOK_OWNERSHIP: web.AppKey[Ownership] = web.AppKey("webhook_ownership")
WEBHOOK_WRITES: web.AppKey[GroupCommit[Document, bool]] = web.AppKey("webhook_writes")
WEBHOOK_CLOSER: web.AppKey[BatchCloser] = web.AppKey("webhook_closer")
ADMIN_API: web.AppKey[AdminApi] = web.AppKey("admin_api")  # the composed admin routes (the dashboard calls them)
BACKGROUND_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("background_tasks")
