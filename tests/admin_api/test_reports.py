"""Report routes every flow shares: any listed flow by name (zeros until it sends), and the LINE quota."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from bot.typedefs import LINE
from flows.catalog import REPORTED_FLOWS
from linesim.client import SimClient
from tests.conftest import ShopHandle

U1 = "U" + "a" * 32


def base(shop: ShopHandle) -> str:
    return f"/admin/api/v1/shops/{shop.shop_id}"


async def test_every_listed_flow_reports_zeros_until_it_sends(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    for flow in REPORTED_FLOWS:
        response = await client.get(f"{base(shop)}/reports/flows/{flow.name}", headers=shop.auth,
                                    params={"from": "2037-12-01", "to": "2037-12-03"})
        assert response.status == 200, await response.text()
        report = await response.json()
        assert report["flow"] == flow.name
        assert [day["day"] for day in report["days"]] == ["2037-12-01", "2037-12-02", "2037-12-03"]
        assert report["totals"]["sent"] == 0 and report["holdout"] is None and report["lift"] is None
    reminders = await (await client.get(f"{base(shop)}/reports/flows/reminders", headers=shop.auth)).json()
    assert [row["step"] for row in reminders["steps"]] == [1, 2, 3]  # the configured steps, as /reports/reminders


async def test_an_unknown_flow_or_period_is_a_clear_4xx(client: TestClient[Any, Any], make_shop: Any) -> None:
    shop = await make_shop()
    response = await client.get(f"{base(shop)}/reports/flows/nope", headers=shop.auth)
    assert response.status == 404
    assert (await response.json())["error"]["field"] == "flow"
    response = await client.get(f"{base(shop)}/reports/flows/cart", headers=shop.auth,
                                params={"from": "2037-12-05", "to": "2037-12-01"})
    assert response.status == 422 and (await response.json())["error"]["field"] == "to"
    for field, value in (("to", "9999-12-31"), ("from", "0001-01-01T00:00:00+14:00")):
        for route in ("/reports/flows/cart", "/reports/reminders"):
            response = await client.get(f"{base(shop)}{route}", headers=shop.auth, params={field: value})
            assert response.status == 422 and (await response.json())["error"]["field"] == field
    other = await make_shop()
    assert (await client.get(f"{base(shop)}/reports/flows/cart", headers=other.auth)).status == 401


async def test_quota_is_what_line_counts(client: TestClient[Any, Any], make_shop: Any, linesim_url: str) -> None:
    shop = await make_shop()
    async with SimClient(linesim_url) as sim:
        response = await client.get(f"{base(shop)}/reports/quota", headers=shop.auth)
        assert await response.json() == {"limit": None, "used": 0, "remaining": None}
        await sim.config(monthly_quota=100)
        await sim.add_user(U1)
        sender = client.app[LINE].for_token(shop.channel_access_token)
        for n in range(3):
            await sender.push(U1, [{"type": "text", "text": f"{n}"}], retry_key=f"00000000-0000-4000-8000-00000000000{n}")
        response = await client.get(f"{base(shop)}/reports/quota", headers=shop.auth)
        assert await response.json() == {"limit": 100, "used": 3, "remaining": 97}
        await sim.faults("quota_consumption", status=500)
        response = await client.get(f"{base(shop)}/reports/quota", headers=shop.auth)
        assert response.status == 502 and (await response.json())["error"]["code"] == "line_unavailable"
