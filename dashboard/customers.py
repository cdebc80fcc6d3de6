"""Customers: search by LINE user ID, tag or browser; one customer's flows, last deliveries, points and
the reminder dry run drawn as the carousel would look in LINE."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.typedefs import DATABASE
from core.clock import as_utc
from core.errors import ApiError
from dashboard.flex_preview import preview
from dashboard.pages import Page, signed_in
from flows.catalog import reported_flow
from storage.browsers import BrowserRepository
from storage.contacts import ContactRepository

SEARCH_KINDS = {"user": "LINEユーザーID", "tag": "タグ", "browser": "ブラウザID"}
PAGE_SIZE = 50
LAST_DELIVERIES = 20
STATE_TITLES = {"points": "ポイント通知"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def flow_title(name: str) -> str:
    """A flow (or sub-state key: they are mostly the same) as the merchant reads it."""
    flow = reported_flow(name)
    return flow.title if flow is not None else STATE_TITLES.get(name, name)


async def _search(page: Page, kind: str, text: str, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    if kind == "tag":
        query = {"tag": text, "limit": str(PAGE_SIZE), **({"after": after} if after else {})}
        found = await page.gateway.get("/customers", query=query)
        return list(found["items"]), found["next_after"]
    line_user_id: str | None = text
    if kind == "browser":
        if len(text) > 128:
            return [], None
        browser = await BrowserRepository(page.request.app[DATABASE]).get(page.shop_id, text)
        line_user_id = browser.get("line_user_id") if browser else None
    if not line_user_id:
        return [], None
    try:
        return [await page.gateway.get("/customers/{line_user_id}", line_user_id=line_user_id)], None
    except ApiError as exc:
        if exc.status == 404:
            return [], None
        raise


@signed_in
async def customer_search(page: Page) -> web.StreamResponse:
    kind = page.request.query.get("by", "user")
    text = page.request.query.get("q", "").strip()
    if kind not in SEARCH_KINDS:
        kind = "user"
    results: list[dict[str, Any]] = []
    next_after = None
    message = None
    if text:
        try:
            results, next_after = await _search(page, kind, text, page.request.query.get("after") or None)
        except ApiError as exc:
            if exc.status >= 500:
                raise
            message = f"検索できませんでした: {exc.message}"
        if not results and message is None:
            message = "該当する顧客はいません。"
    return page.render("customers.html", kinds=SEARCH_KINDS, kind=kind, q=text, results=results,
                       next_after=next_after, message=message)


def _next_step(value: Any) -> int | None:
    """A sub-state's `next_step` (0-based, as the flows keep it) as the merchant counts steps."""
    return value + 1 if isinstance(value, int) and not isinstance(value, bool) else None


def _when(value: Any) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


@signed_in
async def customer_page(page: Page) -> web.StreamResponse:
    line_user_id = page.request.match_info["line_user_id"]
    try:
        customer = await page.gateway.get("/customers/{line_user_id}", line_user_id=line_user_id)
    except ApiError as exc:
        if exc.status in (404, 422):
            return page.error(404, "その顧客は見つかりません。")
        raise
    history = await page.gateway.get("/customers/{line_user_id}/points/history", query={"limit": "10"},
                                     line_user_id=line_user_id)
    contact = await ContactRepository(page.request.app[DATABASE]).get(page.shop_id, line_user_id) or {}
    flows = [{"title": flow_title(key), "key": key, "status": state.get("status"), "due_at": _when(state.get("due_at")),
              "step": _next_step(state.get("next_step"))}
             for key, state in sorted((contact.get("flows") or {}).items()) if isinstance(state, dict)]
    deliveries = sorted((entry for entry in contact.get("log") or [] if isinstance(entry, dict)),
                        key=lambda entry: _when(entry.get("at")) or EPOCH,
                        reverse=True)[:LAST_DELIVERIES]
    for entry in deliveries:
        entry["title"] = flow_title(str(entry.get("flow")))
    dry_run = await page.gateway.get("/reminders/dry-run", query={"line_user_id": line_user_id})
    stages = []
    for label, stage in (("いま", dry_run.get("now")), ("次回", dry_run.get("then"))):
        if stage:
            message = stage.get("message")
            stages.append({"label": label, "stage": stage,
                           "preview": preview(message) if isinstance(message, dict) else None})
    return page.render("customer.html", customer=customer, history=history["items"], flows=flows,
                       deliveries=deliveries, stages=stages)
