"""A segment's own rich menu against linesim: created like the default one, linked to members in bulk,
members who leave fall back to the default at the next refresh, a new design relinks everyone, a deleted
segment unlinks everyone; the default menu's deploy leaves segment menus alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from linebot.v3.messaging import ApiException

from bot.richmenu.segments import REFRESH, refresh_menus
from bot.typedefs import LINE
from tests.conftest import START
from tests.flows.broadcasts.conftest import World, user

MENU = {"size": "compact", "chat_bar_text": "VIPメニュー", "button_color": "#B8860B",
        "buttons": [{"label": "VIP特典", "action": "url", "url": "https://shop.example/vip"},
                    {"label": "ポイント確認", "action": "points"}]}


async def menu_of(world: World, line_user_id: str) -> str | None:
    line = world.client.app[LINE].for_token(world.shop.channel_access_token)
    try:
        return str((await line.api.get_rich_menu_id_of_user(line_user_id)).rich_menu_id)
    except ApiException as exc:
        assert exc.status == 404
        return None  # the default menu


async def menus(world: World) -> dict[str, str]:
    line = world.client.app[LINE].for_token(world.shop.channel_access_token)
    return {m.rich_menu_id: m.name for m in (await line.api.get_rich_menu_list()).richmenus}


async def refresh(world: World, at: Any) -> dict[str, int]:
    world.clock.set(at)
    return await refresh_menus(world.ctx(), at, None)


async def test_a_segment_menu_follows_its_members(world: World) -> None:
    await world.customers([world.customer_doc(user(i), tags=["vip"] if i < 700 else []) for i in range(800)])
    await world.call("POST", "/rich-menu/deploy", 201)  # the shop's default menu
    segment = await world.segment("vip", {"tags_all": ["vip"]}, rich_menu=MENU)
    assert segment["rich_menu"]["chat_bar_text"] == "VIPメニュー"
    summary = await refresh(world, START)
    assert summary["menus_created"] == 1 and summary["linked"] == 700
    state = (await world.call("GET", "/segments/vip", 200))["menu"]
    own = state["rich_menu_id"]
    assert state["members"] == 700 and (await menus(world))[own].startswith("linecrm-seg:")
    assert await menu_of(world, user(0)) == own and await menu_of(world, user(699)) == own
    assert await menu_of(world, user(700)) is None

    # user(0) leaves, user(700) joins; nothing changes before the next refresh.
    await world.call("POST", "/customers/tags", 200, json={"line_user_ids": [user(0)], "remove": ["vip"]})
    await world.call("POST", "/customers/tags", 200, json={"line_user_ids": [user(700)], "add": ["vip"]})
    assert await refresh(world, START + timedelta(minutes=5)) == {}
    summary = await refresh(world, START + REFRESH)
    assert summary["linked"] == 1 and summary["unlinked"] == 1 and "menus_created" not in summary
    assert await menu_of(world, user(0)) is None and await menu_of(world, user(700)) == own

    # The default menu's redeploy leaves the segment's menu alone.
    await world.call("POST", "/rich-menu/deploy", 201)
    assert own in await menus(world)

    # A new design: a new menu for every member, the old one deleted.
    await world.segment("vip", {"tags_all": ["vip"]}, rich_menu={**MENU, "button_color": "#000000"})
    summary = await refresh(world, START + REFRESH + timedelta(minutes=1))
    new = (await world.call("GET", "/segments/vip", 200))["menu"]["rich_menu_id"]
    assert summary["menus_created"] == 1 and summary["linked"] == 700 and new != own
    assert own not in await menus(world) and await menu_of(world, user(5)) == new

    # Deleting the segment unlinks everyone and deletes its menu.
    await world.call("DELETE", "/segments/vip", 204)
    summary = await refresh(world, START + REFRESH + timedelta(minutes=2))
    assert summary["unlinked"] == 700 and await menu_of(world, user(5)) is None
    assert new not in await menus(world)
    assert await world.db["segments"].count_documents({}) == 0
    assert await world.db["segment_members"].count_documents({}) == 0


async def test_a_refresh_that_died_mid_way_is_finished_by_the_next_worker(world: World) -> None:
    await world.customers([world.customer_doc(user(i), tags=["vip"]) for i in range(1200)])
    await world.segment("vip", {"tags_all": ["vip"]}, rich_menu=MENU)
    # LINE refuses the first bulk link: the refresh stops after recording who *may* be linked.
    await world.sim.faults("richmenu_bulk_link", status=400, count=1)
    first = await refresh(world, START)
    assert first["failed"] == 1  # the segment stays leased: its lease hands it to a later run
    assert await refresh(world, START + timedelta(minutes=10)) == {}
    summary = await refresh(world, START + timedelta(minutes=31))
    assert summary["refreshed"] == 1 and "menus_created" not in summary
    own = (await world.call("GET", "/segments/vip", 200))["menu"]["rich_menu_id"]
    assert {await menu_of(world, user(i)) for i in (0, 600, 1199)} == {own}
    assert len(await menus(world)) == 1
