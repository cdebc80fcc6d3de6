"""The dashboard in a real browser (headless Chromium from Debian, driven by Playwright, as the linking test):
sign in, open every page at 1280 px and 375 px, check every number against the admin API, save screenshots.

Fails on: a number that differs from the API's report for the same period, an empty chart (or funnel) where
the API has data, horizontal overflow at 375 px, and any console error or uncaught page error.
Screenshots go to `artifacts/screenshots/dashboard/` (gitignored).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.typedefs import DATABASE, LINE, SETTINGS
from delivery.context import JobContext
from flows.catalog import REPORTED_FLOWS, reported_flows
from scheduler.jobs import run_due_jobs
from tests.dashboard.conftest import PERIOD, TAG, Deliveries, api, make_deliveries
from tests.flows.reminders.conftest import World
from tests.linking.test_e2e_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}")

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots" / "dashboard"
WIDE, NARROW = 1280, 375
COUNTS = ("friends", "blocked", "linked_browsers", "linked_customers", "reachable_customers")
FLOW_METRICS = ("sent", "clicks", "conversions", "revenue")
TOTAL_METRICS = ("targeted", "sent", "clicks", "conversions", "revenue", "failed", "held")
STAGES = {"対象": "targeted", "送信": "sent", "クリック": "clicks", "コンバージョン": "conversions"}
QUERY = f"from={PERIOD['from']}&to={PERIOD['to']}"


def png() -> bytes:
    """A product photo as the shop's image server would answer it."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (230, 120, 40)).save(out, format="PNG")
    return out.getvalue()


def as_number(text: str) -> int:
    digits = re.sub(r"[¥,\s]|pt$", "", text.strip())
    assert re.fullmatch(r"-?\d+", digits), f"not a number: {text!r}"
    return int(digits)


async def shown(page: Any, selector: str) -> int:
    return as_number(await page.locator(selector).inner_text())


async def no_overflow(page: Any) -> None:
    """At 375 px nothing may widen the page (a carousel or a table may scroll inside its own box)."""
    width = await page.evaluate("""() => {
        const wide = [...document.querySelectorAll('body *')].filter(e => {
            for (let p = e.parentElement; p; p = p.parentElement) {
                const style = getComputedStyle(p);
                if (style.overflowX === 'auto' || style.overflowX === 'hidden' || style.overflowX === 'scroll') return false;
            }
            return e.getBoundingClientRect().right > window.innerWidth + 0.5;
        }).slice(0, 5).map(e => e.tagName.toLowerCase() + '.' + e.className);
        return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, wide};
    }""")
    assert width["scroll"] <= width["inner"], f"horizontal overflow at {width['inner']} px: {width}"


async def both_widths(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}-{WIDE}.png"), full_page=True)
    await page.set_viewport_size({"width": NARROW, "height": 800})
    await no_overflow(page)
    await page.screenshot(path=str(SHOTS / f"{name}-{NARROW}.png"), full_page=True)
    await page.set_viewport_size({"width": WIDE, "height": 900})


async def check_overview(page: Any, world: World, d: Deliveries) -> None:
    counts = await api(world.client, d.shop, "/reports/links")
    for metric in COUNTS:
        assert await shown(page, f"#counts [data-metric={metric}] .card-value") == counts[metric], metric
    quota = await api(world.client, d.shop, "/reports/quota")
    sent = await world.sim.messages()
    recipients = sum(len(m["to"]) if isinstance(m["to"], list) else 1 for m in sent if m["kind"] != "reply")
    assert await shown(page, "[data-metric=quota_used] .card-value") == quota["used"] == recipients
    sections = await page.eval_on_selector_all("article.flow", "items => items.map(i => i.dataset.flow)")
    assert sections == [f.name for f in await reported_flows(world.db, d.shop.shop_id)]
    for name in sections:
        report = await api(world.client, d.shop, f"/reports/flows/{name}", **PERIOD)
        article = page.locator(f"article.flow[data-flow='{name}']")
        for metric in FLOW_METRICS:
            value = as_number(await article.locator(f"[data-metric={metric}] dd").inner_text())
            assert value == report["totals"][metric], (name, metric)
        lift = await article.locator("[data-metric=lift]").inner_text()
        if report["lift"] is None:
            assert "ホールドアウトなし" in lift
        else:
            assert f"{report['lift']['difference'] * 100:+.1f}pt" in lift
    reminders = await api(world.client, d.shop, "/reports/reminders", **PERIOD)
    assert reminders["totals"]["sent"] > 0  # the fixture's data is there, so the checks above saw real numbers


async def check_flow(page: Any, report: dict[str, Any]) -> None:
    for metric in TOTAL_METRICS:
        assert await shown(page, f"#totals [data-metric={metric}] .card-value") == report["totals"][metric], metric
    for metric in FLOW_METRICS:
        expected = {day["day"]: day[metric] for day in report["days"] if day[metric] > 0}
        bars = await page.eval_on_selector_all(
            f"svg.chart-svg[data-metric={metric}] rect.bar",
            "rects => rects.map(r => [r.dataset.day, Number(r.dataset.value), r.getBoundingClientRect().height])")
        drawn = {day: value for day, value, height in bars if height > 0}
        assert drawn == expected, f"chart {metric}: drawn {drawn}, the API has {expected}"
        assert len(await page.locator(f"svg.chart-svg[data-metric={metric}]").all()) == 1
    for row in report["steps"]:
        step = "" if row["step"] is None else str(row["step"])
        bars = await page.eval_on_selector_all(
            f"article.step[data-step='{step}'] rect.funnel-bar",
            "rects => rects.map(r => [r.dataset.stage, Number(r.dataset.value), r.getBoundingClientRect().width])")
        drawn = {STAGES[stage]: value for stage, value, width in bars if width > 0}
        assert drawn == {key: row[key] for key in STAGES.values() if row[key] > 0}, f"funnel of step {step}"
    skipped = await page.eval_on_selector_all(
        "#skipped-total tr", "rows => rows.map(r => [r.dataset.reason, r.querySelector('td').textContent])")
    assert {reason: as_number(n) for reason, n in skipped} == report["totals"]["skipped"]


async def check_customer(page: Any, world: World, d: Deliveries, user: str) -> None:
    customer = await api(world.client, d.shop, f"/customers/{user}")
    assert await shown(page, "#points [data-metric=balance] .card-value") == customer["points"]["balance"]
    dry = await api(world.client, d.shop, "/reminders/dry-run", line_user_id=user)
    messages = [stage["message"] for stage in (dry["now"], dry["then"]) if stage and stage.get("message")]
    assert messages, "the fixture's customer should have a reminder to preview"
    carousels = page.locator(".line-carousel")
    assert await carousels.count() == len(messages)
    for index, message in enumerate(messages):
        bubbles = message["contents"]["contents"]
        carousel = carousels.nth(index)
        assert await carousel.locator(".fx-bubble").count() == len(bubbles)
        text = await carousel.inner_text()
        for bubble in bubbles:
            title = bubble["body"]["contents"][1]["text"]
            label = bubble["footer"]["contents"][0]["action"]["label"]
            assert title in text and label in text
        widths = await carousel.locator("img.fx-image").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        assert widths and all(w > 0 for w in widths), "every product image is drawn"


async def has_broadcasts(world: World) -> bool:
    document = await (await world.client.get("/admin/api/v1/openapi.json")).json()
    return "/admin/api/v1/shops/{shop_id}/broadcasts" in document["paths"]


async def broadcast_through_the_screen(page: Any, world: World, d: Deliveries) -> None:
    """Pick a segment, check its count, write a text, send, let the worker run, follow the progress."""
    response = await world.client.put(f"/admin/api/v1/shops/{d.shop.shop_id}/segments/gold", headers=d.shop.auth,
                                      json={"name": "ゴールド会員", "filter": {"tags_all": [TAG]}})
    assert response.status in (200, 201), await response.text()
    await page.reload()
    if await page.locator("select#segment_id").count():
        await page.select_option("select#segment_id", "gold")
    else:
        await page.fill("#segment_id", "gold")
    await page.click("#preview")
    await page.wait_for_selector("#preview-count")
    expected = await api(world.client, d.shop, "/segments/gold/preview")
    assert await shown(page, "#preview-count") == expected["count"] > 0
    await both_widths(page, "broadcasts")
    await page.fill("#text", "週末はポイント2倍！")
    await page.click("#send")
    await page.wait_for_selector("#broadcast")
    broadcast_id = page.url.rsplit("/", 1)[1]
    app = world.client.app
    await run_due_jobs(JobContext(database=app[DATABASE], line=app[LINE], settings=app[SETTINGS],
                                  worker_id="e2e"), world.clock.now())
    await page.reload()
    figures = await api(world.client, d.shop, f"/broadcasts/{broadcast_id}")
    assert await page.locator("#broadcast").get_attribute("data-status") == figures["status"]
    for metric in ("targeted", "sent", "failed", "clicks", "conversions"):
        assert await shown(page, f"#broadcast [data-metric={metric}] .card-value") == figures[metric], metric
    await both_widths(page, "broadcast")


async def test_dashboard_pages_in_a_real_browser(world: World) -> None:
    playwright_api = pytest.importorskip("playwright.async_api", reason="Playwright's Python package is missing")
    d = await make_deliveries(world)
    other = await world.client.post("/admin/api/v1/shops", headers={"Authorization": "Bearer operator-test-token"},
                                    json={"name": "別のショップ", "channel_secret": "s" * 32,
                                          "channel_access_token": "tok-other"})
    other_key = (await other.json())["api_key"]
    base = str(world.client.make_url("")).rstrip("/")
    previewed = next(u for u in d.sent if u != d.buyer)  # an active cycle: its next step has a carousel
    errors: list[str] = []
    image = png()

    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": WIDE, "height": 900}, locale="ja-JP")
            await context.route("https://shop.example/**", lambda route: route.fulfill(
                status=200, body=image, content_type="image/png"))
            page = await context.new_page()
            page.on("console", lambda message: errors.append(f"console: {message.text}")
                    if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))

            await page.goto(f"{base}/dashboard")
            assert page.url == f"{base}/dashboard/login"
            await page.fill("#shop_id", d.shop.shop_id)
            await page.fill("#api_key", other_key)  # another shop's key: refused
            await page.click("#login")
            await page.wait_for_selector("#login-error")
            assert page.url == f"{base}/dashboard/login?failed=1"
            await both_widths(page, "login")
            await page.fill("#shop_id", d.shop.shop_id)
            await page.fill("#api_key", d.shop.api_key)
            await page.click("#login")
            await page.wait_for_url(f"{base}/dashboard")

            await page.goto(f"{base}/dashboard/broadcasts")
            if await has_broadcasts(world):
                await broadcast_through_the_screen(page, world, d)
            else:
                assert await page.locator("#broadcasts-unavailable").is_visible()
                await both_widths(page, "broadcasts")

            await page.goto(f"{base}/dashboard?{QUERY}")
            await check_overview(page, world, d)
            await both_widths(page, "overview")

            links = await page.eval_on_selector_all("article.flow h3 a", "links => links.map(a => a.href)")
            assert len(links) >= len(REPORTED_FLOWS) - 1
            for link in links:
                await page.goto(link)
                name = await page.get_attribute("h1[data-flow]", "data-flow")
                await check_flow(page, await api(world.client, d.shop, f"/reports/flows/{name}", **PERIOD))
                if name == "reminders":
                    assert await page.locator("rect.bar").count() > 0
                    await check_flow(page, await api(world.client, d.shop, "/reports/reminders", **PERIOD))
                await both_widths(page, f"flow-{str(name).replace(':', '-')}")

            await page.goto(f"{base}/dashboard/customers")
            await page.select_option("#search-by", "tag")
            await page.fill("#search-q", TAG)
            await page.click("#search")
            await page.wait_for_selector("#results")
            listed = await page.eval_on_selector_all("#results li", "items => items.map(i => i.dataset.user)")
            tagged = await api(world.client, d.shop, "/customers", tag=TAG)
            assert sorted(listed) == sorted(c["line_user_id"] for c in tagged["items"]) and listed
            await both_widths(page, "customers")

            await page.goto(f"{base}/dashboard/customers/{previewed}")
            await check_customer(page, world, d, previewed)
            await both_widths(page, "customer")


            await page.click("#logout")
            await page.wait_for_url(f"{base}/dashboard/login")
            await page.goto(f"{base}/dashboard")
            assert page.url == f"{base}/dashboard/login"  # the session ended
        finally:
            await browser.close()
    assert errors == []
