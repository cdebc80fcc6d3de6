"""Ingest listeners are durable: a web process killed between the ingest write and its listeners loses
nothing — the intent it wrote first is run by the worker's outbox drain (`python -m scheduler run-once`)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, timedelta
from typing import Any

from storage.signals import OUTBOX
from tests.conftest import START
from tests.flows.reminders.conftest import World, days

U1 = "U" + "7" * 32


def environment(settings: Any) -> dict[str, str]:
    return {**os.environ, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
            "LINE_API_BASE": settings.line_api_base, "PUBLIC_BASE_URL": "http://shop-bot.test", "LOG_LEVEL": "WARNING"}


async def run(settings: Any, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", *args, env=environment(settings),
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return int(process.returncode or 0), (out + err).decode()


async def killed_after(world: World, settings: Any, kind: str, at: datetime) -> None:
    code, output = await run(settings, "tests.delivery.die_after_ingest", kind, world.shop.shop_id, U1, at.isoformat())
    assert code == 9, output  # died at the planned instruction, after the ingest write
    assert await world.db[OUTBOX].count_documents({}) >= 1


async def drain(world: World, settings: Any, at: datetime) -> dict[str, Any]:
    code, output = await run(settings, "scheduler", "run-once", "--now", at.isoformat())
    assert code == 0, output
    summary = json.loads(output.splitlines()[-1])
    assert await world.db[OUTBOX].count_documents({}) == 0
    return dict(summary["jobs"]["outbox"])


async def test_an_order_whose_process_died_before_its_listeners_still_stops_and_converts(world: World,
                                                                                          settings: Any) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1")
    await world.customer(U1)
    await world.view(U1, "p1", START)
    assert (await world.run(START + days(3)))["sent"] == 1
    ordered = START + days(3) + timedelta(hours=1)
    await killed_after(world, settings, "order", ordered)
    assert await world.db["orders"].count_documents({"order_id": "o-killed"}) == 1  # the write happened
    assert (await world.reminder(U1))["status"] == "active"  # its listeners did not run
    assert await world.db["conversions"].count_documents({}) == 0
    assert (await drain(world, settings, ordered + timedelta(minutes=2)))["redelivered"] == 1
    assert (await world.reminder(U1))["status"] == "stopped"
    assert [c["order_id"] async for c in world.db["conversions"].find({})] == ["o-killed"]


async def test_a_link_whose_process_died_before_its_listeners_still_starts_the_cycle(world: World,
                                                                                       settings: Any) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1")
    await world.customer(U1)
    await world.view(None, "p1", START, browser="b-killed")  # viewed before linking
    await killed_after(world, settings, "link", START + days(1))
    browser = await world.db["browsers"].find_one({"_id": f"{world.shop.shop_id}:b-killed"})
    assert browser is not None and browser["line_user_id"] == U1
    assert await world.reminder(U1) == {}
    await drain(world, settings, START + days(1) + timedelta(minutes=2))
    assert (await world.reminder(U1))["cycle_started_at"] == START  # anchored at the view before the link
    assert (await world.run(START + days(3)))["sent"] == 1


async def test_a_view_whose_process_died_before_its_listeners_still_starts_the_cycle(world: World,
                                                                                       settings: Any) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.product("p1")
    await world.customer(U1)
    await world.db["browsers"].update_one({"_id": f"{world.shop.shop_id}:b-{U1}"}, {"$set": {
        "shop_id": world.shop.shop_id, "browser_id": f"b-{U1}", "line_user_id": U1}}, upsert=True)
    await killed_after(world, settings, "view", START)
    assert await world.db["tracking_batches"].count_documents(
        {"keys": f"{world.shop.shop_id}:e-killed", "state": "done"}) == 1  # stored and applied, listeners not run
    assert await world.reminder(U1) == {}
    await drain(world, settings, START + timedelta(minutes=2))
    assert (await world.reminder(U1))["status"] == "active"
    assert (await world.run(START + days(3)))["sent"] == 1
