"""Rich menu layout and image: LINE's size rules, areas covering the image, labels drawn inside their area."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.postback import parse
from bot.richmenu.layout import layout, rich_menu_object
from bot.richmenu.render import render
from linesim.richmenu import size_errors
from linesim.validation import validate_request
from storage.shop_settings import RichMenuAction, RichMenuButton, RichMenuSettings, RichMenuSize

TEXT = (255, 0, 255)  # a text colour that appears nowhere else


def _settings(size: RichMenuSize, labels: list[str]) -> RichMenuSettings:
    actions: list[RichMenuAction] = ["points", "history", "link", "opt_out", "opt_in", "points"]
    return RichMenuSettings(
        size=size, background_color="#FFFFFF", button_color="#06C755", text_color="#FF00FF",
        buttons=[RichMenuButton(label=label, action=action) for label, action in zip(labels, actions, strict=False)],
    )


@pytest.mark.parametrize(("size", "count"), [("compact", 1), ("compact", 3), ("large", 4), ("large", 6), ("compact", 5)])
def test_image_size_and_text_pixels_inside_each_area(size: RichMenuSize, count: int) -> None:
    labels = ["ポイント確認", "購入履歴", "ブラウザ連携", "配信停止", "配信再開", "会員ランク"][:count]
    settings = _settings(size, labels)
    (width, height), areas = layout(settings)
    image = Image.open(io.BytesIO(render(settings))).convert("RGB")
    assert image.size == (width, height) and size_errors(width, height) == []

    covered = sum(area.bounds.width * area.bounds.height for area in areas)
    assert covered == width * height  # the areas tile the image: every tap does something

    pixels = image.load()
    assert pixels is not None
    in_area = [0] * len(areas)
    for y in range(0, height, 2):
        for x in range(0, width, 2):
            if pixels[x, y] != TEXT:
                continue
            owners = [i for i, a in enumerate(areas) if a.bounds.x <= x < a.bounds.x + a.bounds.width
                      and a.bounds.y <= y < a.bounds.y + a.bounds.height]
            assert len(owners) == 1
            in_area[owners[0]] += 1
            bounds = areas[owners[0]].bounds
            # text keeps clear of its area's edges (it is drawn on the button, not across buttons)
            assert bounds.x + bounds.width * 0.05 < x < bounds.x + bounds.width * 0.95
    assert all(count > 50 for count in in_area), in_area


def test_rich_menu_object_is_valid_for_line() -> None:
    settings = RichMenuSettings(buttons=[
        RichMenuButton(label="ポイント確認", action="points"),
        RichMenuButton(label="ショップへ", action="url", url="https://shop.example.jp/"),
    ])
    body = rich_menu_object(settings, "shp_1", "20371201T010000")
    assert validate_request("RichMenuRequest", body) == []
    assert body["name"] == "linecrm:shp_1:20371201T010000" and body["chatBarText"] == "メニュー"
    first, second = body["areas"]
    assert parse(first["action"]["data"]).action == "points" and first["action"]["displayText"] == "ポイント確認"
    assert second["action"] == {"type": "uri", "label": "ショップへ", "uri": "https://shop.example.jp/"}
