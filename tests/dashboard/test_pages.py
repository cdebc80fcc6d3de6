"""Dashboard pages without a browser: search, not-found, hostile input (never a 5xx), escaping, and the
broadcast screen over the documented admin routes."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from flows.catalog import REPORTED_FLOWS
from tests.conftest import START
from tests.dashboard.conftest import LINKED_BROWSER, PERIOD, TAG, api, csrf_of, make_deliveries, sign_in
from tests.flows.reminders.conftest import World


async def signed_in(world: World) -> None:
    response = await sign_in(world.client, world.shop.shop_id, world.shop.api_key)
    assert response.status == 303


async def page(client: TestClient[Any, Any], path: str, status: int = 200, **params: str) -> str:
    response = await client.get(path, params=params, allow_redirects=False)
    assert response.status == status, (path, params, response.status)
    assert response.headers["Content-Type"].startswith("text/html")
    assert "script-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    return await response.text()


def users_listed(html: str) -> list[str]:
    return re.findall(r'<li data-user="([^"]+)"', html)


async def test_search_by_line_user_id_tag_or_browser(world: World) -> None:
    d = await make_deliveries(world)
    await signed_in(world)
    assert users_listed(await page(world.client, "/dashboard/customers", by="user", q=d.buyer)) == [d.buyer]
    assert users_listed(await page(world.client, "/dashboard/customers", by="browser", q=LINKED_BROWSER)) == [d.buyer]
    tagged = await api(world.client, d.shop, "/customers", tag=TAG)
    assert sorted(users_listed(await page(world.client, "/dashboard/customers", by="tag", q=TAG))) == sorted(
        c["line_user_id"] for c in tagged["items"])
    for by, q in (("user", "U" + "0" * 32), ("browser", "nobody"), ("tag", "ないタグ")):
        html = await page(world.client, "/dashboard/customers", by=by, q=q)
        assert users_listed(html) == [] and "該当する顧客はいません" in html


async def test_another_shops_customers_are_not_found(world: World, make_shop: Any) -> None:
    d = await make_deliveries(world)
    other = await make_shop()
    response = await sign_in(world.client, other.shop_id, other.api_key)
    assert response.status == 303
    assert users_listed(await page(world.client, "/dashboard/customers", by="user", q=d.buyer)) == []
    assert users_listed(await page(world.client, "/dashboard/customers", by="browser", q=LINKED_BROWSER)) == []
    await page(world.client, f"/dashboard/customers/{d.buyer}", 404)


async def test_unknown_things_and_bad_periods_are_clear_pages(world: World) -> None:
    await signed_in(world)
    await page(world.client, "/dashboard/flows/nope", 404)
    assert "入力が正しくありません" in await page(world.client, "/dashboard", 422, **{"from": "yesterday"})
    await page(world.client, "/dashboard/flows/reminders", 422, **{"from": "2037-12-05", "to": "2037-12-01"})
    await page(world.client, "/dashboard/flows/reminders", 422, **{"from": "2030-01-01", "to": "2037-12-01"})
    await page(world.client, "/dashboard/customers/nobody", 404)


HOSTILE = ["", " ", "x" * 5000, "\x00", "../../etc/passwd", "<script>alert(1)</script>", "%00", "😀" * 300,
           "2037-13-45", "9999-12-31", "-1", "U" + "a" * 200, "'; db.dropDatabase()", "{\"$gt\": \"\"}"]


@pytest.mark.parametrize("value", HOSTILE)
async def test_no_input_gets_a_5xx(world: World, value: str) -> None:
    await signed_in(world)
    client = world.client
    token = csrf_of(await page(client, "/dashboard"))
    gets = [("/dashboard", {"from": value, "to": value}), ("/dashboard/flows/reminders", {"from": value}),
            ("/dashboard/customers", {"by": value, "q": value}), ("/dashboard/customers", {"by": "tag", "q": value,
                                                                                         "after": value}),
            ("/dashboard/customers", {"by": "browser", "q": value}), ("/dashboard/broadcasts", {"segment_id": value}),
            (f"/dashboard/customers/{quote(value, safe='') or 'x'}", {}),
            (f"/dashboard/broadcasts/{quote(value, safe='') or 'x'}", {}),
            (f"/dashboard/flows/{quote(value, safe='') or 'x'}", {})]
    for path, params in gets:
        response = await client.get(path, params=params, allow_redirects=False)
        assert response.status < 500, (path, params, await response.text())
        assert "<script>alert" not in await response.text()
    posts = [("/dashboard/broadcasts", {"csrf": token, "segment_id": value, "broadcast_id": value, "text": value,
                                        "send_at": value}),
             ("/dashboard/login", {"csrf": value, "shop_id": value, "api_key": value}),
             ("/dashboard/broadcasts/x/cancel", {"csrf": token})]
    for path, data in posts:
        response = await client.post(path, data=data, allow_redirects=False)
        assert response.status < 500, (path, data, await response.text())
    files = FormData()
    files.add_field("csrf", token)
    files.add_field("text", b"binary", filename="a.bin", content_type="application/octet-stream")
    response = await client.post("/dashboard/broadcasts", data=files, allow_redirects=False)
    assert response.status < 500
    assert (await client.post("/dashboard/logout", data=b"\xff\xfe", allow_redirects=False,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})).status == 403


async def test_what_a_merchant_or_customer_wrote_is_shown_as_text(world: World) -> None:
    d = await make_deliveries(world)
    tag = '<img src=x onerror="alert(1)">'
    await world.client.post(f"/admin/api/v1/shops/{d.shop.shop_id}/customers/tags", headers=d.shop.auth,
                            json={"line_user_ids": [d.buyer], "add": [tag]})
    await signed_in(world)
    html = await page(world.client, f"/dashboard/customers/{d.buyer}")
    assert tag not in html and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


async def test_the_overview_shows_every_listed_flow(world: World) -> None:
    await make_deliveries(world)
    await signed_in(world)
    html = await page(world.client, "/dashboard", 200, **PERIOD)
    assert re.findall(r'<article class="flow" data-flow="([^"]+)"', html) == [f.name for f in REPORTED_FLOWS]


async def test_a_family_of_flows_shows_a_section_per_member_with_records(world: World) -> None:
    """Step sequences record under "seq:<id>": each one with records gets its own section and page."""
    shop_id = world.shop.shop_id
    await world.db["delivery_log"].insert_many([
        {"_id": f"t{n}:{shop_id}:{flow}", "shop_id": shop_id, "flow": flow, "at": START,
         "items": [{"key": f"k{n}", "user": "U" + "a" * 32, "step": 1, "status": "sent"}]}
        for n, flow in enumerate(("seq:welcome", "seq:winter", "seq:winter", "sequel"))])
    await signed_in(world)
    html = await page(world.client, "/dashboard", 200, **PERIOD)
    names = re.findall(r'<article class="flow" data-flow="([^"]+)"', html)
    assert [n for n in names if n.startswith("seq")] == ["seq:welcome", "seq:winter"]
    assert "ステップ配信（winter）" in html and "sequel" not in names
    flow_page = await page(world.client, "/dashboard/flows/seq%3Awinter", 200, **PERIOD)
    assert re.search(r'data-metric="sent"><span class="card-label">送信</span><span class="card-value">2<', flow_page)
    report = await api(world.client, world.shop, "/reports/flows/seq:winter", **PERIOD)
    assert report["totals"]["sent"] == 2
    await page(world.client, "/dashboard/flows/seq%3A", 404)


async def admin_has(client: TestClient[Any, Any], path: str) -> bool:
    document = await (await client.get("/admin/api/v1/openapi.json")).json()
    return f"/admin/api/v1/shops/{{shop_id}}{path}" in document["paths"]


async def test_the_broadcast_screen_says_when_the_api_has_no_broadcasts(world: World) -> None:
    await signed_in(world)
    html = await page(world.client, "/dashboard/broadcasts")
    if await admin_has(world.client, "/broadcasts"):
        assert 'id="segment-form"' in html
    else:
        assert 'id="broadcasts-unavailable"' in html
        token = csrf_of(html)
        response = await world.client.post("/dashboard/broadcasts", allow_redirects=False,
                                           data={"csrf": token, "segment_id": "s", "broadcast_id": "b", "text": "x"})
        assert response.status == 404


async def test_broadcast_screen_previews_sends_and_follows_through_the_admin_api(world: World) -> None:
    if not await admin_has(world.client, "/broadcasts"):
        pytest.skip("the admin API has no segments and broadcasts in this build (INTERFACES.md routes)")
    d = await make_deliveries(world)
    base = f"/admin/api/v1/shops/{d.shop.shop_id}"
    response = await world.client.put(f"{base}/segments/gold", headers=d.shop.auth,
                                      json={"name": "ゴールド会員", "filter": {"tags_all": [TAG]}})
    assert response.status in (200, 201), await response.text()
    expected = await api(world.client, d.shop, "/segments/gold/preview")
    await signed_in(world)
    html = await page(world.client, "/dashboard/broadcasts", segment_id="gold")
    shown = re.search(r'id="preview-count" data-value="(\d+)"', html)
    assert shown and int(shown.group(1)) == expected["count"]
    form = {"csrf": csrf_of(html), "segment_id": "gold",
            "broadcast_id": re.search(r'name="broadcast_id" value="([^"]+)"', html).group(1),  # type: ignore[union-attr]
            "text": "今週末はポイント2倍です", "send_at": ""}
    response = await world.client.post("/dashboard/broadcasts", data=form, allow_redirects=False)
    assert response.status == 303
    location = response.headers["Location"]
    again = await world.client.post("/dashboard/broadcasts", data=form, allow_redirects=False)  # a double submit
    assert again.status == 303 and again.headers["Location"] == location  # the same broadcast, nothing new
    broadcast = await api(world.client, d.shop, f"/broadcasts/{form['broadcast_id']}")
    html = await page(world.client, location)
    for metric in ("targeted", "sent", "failed", "clicks", "conversions"):
        value = re.search(rf'data-metric="{metric}"><span class="card-label">[^<]*</span>'
                          rf'<span class="card-value">([\d,]+)</span>', html)
        assert value and int(value.group(1).replace(",", "")) == broadcast[metric], metric
    without = {**form, "broadcast_id": "dash-other", "csrf": ""}
    assert (await world.client.post("/dashboard/broadcasts", data=without, allow_redirects=False)).status == 403
    missing = await world.client.get(f"{base}/broadcasts/dash-other", headers=d.shop.auth)
    assert missing.status == 404


MALFORMED = [("multipart/form-data; boundary=xx", b"--xx\r\nContent-Disposition: form-data\r\n\r\nzz"),
             ("multipart/form-data", b"garbage"), ("multipart/form-data; boundary=", b"--\r\n"),
             ("application/x-www-form-urlencoded", b"%%%=&&&=%zz"),
             ("application/x-www-form-urlencoded; charset=klingon", b"a=b"), ("text/plain", b"csrf=1")]


@pytest.mark.parametrize(("content_type", "body"), MALFORMED)
async def test_a_malformed_form_is_refused_not_a_5xx(world: World, content_type: str, body: bytes) -> None:
    await signed_in(world)
    for path in ("/dashboard/logout", "/dashboard/login", "/dashboard/broadcasts"):
        response = await world.client.post(path, data=body, headers={"Content-Type": content_type},
                                           allow_redirects=False)
        assert response.status == 403, (path, await response.text())
    assert (await world.client.get("/dashboard", allow_redirects=False)).status == 200  # still signed in
