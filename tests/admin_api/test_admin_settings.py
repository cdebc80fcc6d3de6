from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from storage.shop_settings import SECTIONS
from tests.admin_api.helpers import BASE, count, error, ok


@pytest.mark.parametrize("section", sorted(SECTIONS))
async def test_get_returns_defaults_and_put_round_trips(client: TestClient[Any, Any], make_shop: Any, section: str) -> None:
    shop = await make_shop()
    url = f"{BASE}/{shop.shop_id}/settings/{section}"
    defaults = await ok(await client.get(url, headers=shop.auth))
    assert defaults == SECTIONS[section]().model_dump(mode="json")
    assert await ok(await client.put(url, json=defaults, headers=shop.auth)) == defaults


async def test_reminder_settings_validation(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    url = f"{BASE}/{shop.shop_id}/settings/reminders"
    body = {"enabled": True, "steps": [{"delay_days": 2, "title": "見た商品", "label": "注目", "low_stock_threshold": 5,
                                        "low_stock_label": "残りわずか!"}, {"delay_days": 5, "coupon_code": "C10"}],
            "quiet_hours": {"enabled": True, "start": "22:00", "end": "08:00"}}
    saved = await ok(await client.put(url, json=body, headers=shop.auth))
    assert saved["steps"][1]["coupon_code"] == "C10" and saved["steps"][1]["label"] == "おすすめ"
    assert (await ok(await client.get(url, headers=shop.auth)))["quiet_hours"]["start"] == "22:00"
    for bad, field in [
        ({"steps": [{"delay_days": 5}, {"delay_days": 5}]}, "steps"),
        ({"steps": [{"delay_days": 3, "label_color": "red"}]}, "steps[0].label_color"),
        ({"quiet_hours": {"start": "25:00"}}, "quiet_hours.start"),
        ({"steps": [{"delay_days": 3, "label": "x" * 21}]}, "steps[0].label"),
        ({"extra": 1}, "extra"),
    ]:
        assert (await error(await client.put(url, json=bad, headers=shop.auth)))["field"] == field
    assert (await ok(await client.get(url, headers=shop.auth)))["steps"][0]["delay_days"] == 2
    assert await count(client, "shop_settings") == 1


async def test_openapi_has_each_section_schema(client: TestClient[Any, Any]) -> None:
    document = await ok(await client.get("/admin/api/v1/openapi.json"))
    put = document["paths"]["/admin/api/v1/shops/{shop_id}/settings/reminders"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ReminderSettings")
    assert "/admin/api/v1/shops/{shop_id}/settings/rich_menu" in document["paths"]
    for path in ("products/{product_id}", "orders", "customers/{line_user_id}", "points/transactions"):
        assert f"/admin/api/v1/shops/{{shop_id}}/{path}" in document["paths"]
