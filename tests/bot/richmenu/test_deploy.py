"""Deploying the rich menu through the admin API against linesim: created, image uploaded, default, replaced."""

from __future__ import annotations

import io
from typing import Any

from aiohttp.test_utils import TestClient
from PIL import Image

from bot.typedefs import LINE
from linesim.client import SimClient
from tests.conftest import ShopHandle


async def test_deploy_sets_the_default_and_redeploy_replaces_it(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient
) -> None:
    base = f"/admin/api/v1/shops/{shop.shop_id}"
    response = await client.put(base + "/settings/rich_menu", headers=shop.auth, json={
        "size": "large", "button_color": "#223344",
        "buttons": [{"label": "ポイント確認", "action": "points"}, {"label": "購入履歴", "action": "history"},
                    {"label": "ショップ", "action": "url", "url": "https://shop.example.jp/"}]})
    assert response.status == 200, await response.text()

    first = await client.post(base + "/rich-menu/deploy", headers=shop.auth)
    assert first.status == 201, await first.text()
    first_body = await first.json()
    assert first_body["width"] == 2500 and first_body["height"] == 1686 and first_body["areas"] == 3
    assert first_body["replaced"] == []

    line = client.app[LINE].for_token(shop.channel_access_token)
    assert (await line.api.get_default_rich_menu_id()).rich_menu_id == first_body["rich_menu_id"]
    menu = await line.api.get_rich_menu(first_body["rich_menu_id"])
    assert [area.action.label for area in menu.areas] == ["ポイント確認", "購入履歴", "ショップ"]

    second = await client.post(base + "/rich-menu/deploy", headers=shop.auth)
    second_body = await second.json()
    assert second_body["replaced"] == [first_body["rich_menu_id"]]
    listing = await line.api.get_rich_menu_list()
    assert [m.rich_menu_id for m in listing.richmenus] == [second_body["rich_menu_id"]]
    assert (await line.api.get_default_rich_menu_id()).rich_menu_id == second_body["rich_menu_id"]


async def test_preview_is_the_png_that_would_be_deployed(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    response = await client.get(f"/admin/api/v1/shops/{shop.shop_id}/rich-menu/preview.png", headers=shop.auth)
    assert response.status == 200 and response.content_type == "image/png"
    assert Image.open(io.BytesIO(await response.read())).size == (2500, 843)


async def test_line_refusal_is_a_502_and_keeps_the_old_menu(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient
) -> None:
    base = f"/admin/api/v1/shops/{shop.shop_id}"
    first = await (await client.post(base + "/rich-menu/deploy", headers=shop.auth)).json()
    await sim.faults("richmenu_upload", status=500)
    failed = await client.post(base + "/rich-menu/deploy", headers=shop.auth)
    assert failed.status == 502 and (await failed.json())["error"]["code"] == "line_error"
    line = client.app[LINE].for_token(shop.channel_access_token)
    assert [m.rich_menu_id for m in (await line.api.get_rich_menu_list()).richmenus] == [first["rich_menu_id"]]
    assert (await line.api.get_default_rich_menu_id()).rich_menu_id == first["rich_menu_id"]


async def test_deploy_needs_the_shop_key(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    response = await client.post(f"/admin/api/v1/shops/{shop.shop_id}/rich-menu/deploy")
    assert response.status == 401
