"""The broadcast screen: pick a segment, see its preview count, compose a text, send now or schedule, follow it.

Built on the documented admin routes (INTERFACES.md "Segments and broadcasts")
through the gateway, so it needs nothing but those routes: until they are
composed into the admin API, the screen says the feature is not available in
this build. Listing segments and broadcasts uses `GET /segments` and
`GET /broadcasts` when the API has them; otherwise a segment is named by its ID.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from core.errors import ApiError
from dashboard.pages import Page, signed_in

SEND = ("POST", "/broadcasts")
MAX_TEXT = 5000  # LINE's limit for a text message


def available(page: Page) -> bool:
    return page.gateway.has(*SEND) and page.gateway.has("GET", "/segments/{segment_id}/preview")


def _items(answer: Any) -> list[dict[str, Any]]:
    """A list route's items, whether it answers a list or a page ({"items": [...]})."""
    items = answer.get("items") if isinstance(answer, dict) else answer
    return [item for item in items or [] if isinstance(item, dict)]


async def _list(page: Page, path: str) -> list[dict[str, Any]]:
    if not page.gateway.has("GET", path):
        return []
    return _items(await page.gateway.get(path))


def _send_at(value: str, timezone: str) -> str | None:
    """A `datetime-local` value (shop time) as ISO 8601 with the shop's offset; None for "now"."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.isoformat()


async def _compose(page: Page, status: int = 200, message: str | None = None, text: str = "",
                   send_at: str = "") -> web.Response:
    if not available(page):
        return page.render("broadcasts.html", status, available=False)
    segment_id = page.request.query.get("segment_id", "").strip()
    preview = None
    if segment_id:
        try:
            preview = await page.gateway.get("/segments/{segment_id}/preview", segment_id=segment_id)
        except ApiError as exc:
            if exc.status >= 500:
                raise
            message = message or ("そのセグメントは見つかりません。" if exc.status == 404 else exc.message)
    return page.render("broadcasts.html", status, available=True, segments=await _list(page, "/segments"),
                       broadcasts=await _list(page, "/broadcasts"), segment_id=segment_id, preview=preview,
                       broadcast_id="dash-" + secrets.token_hex(8), message=message, text=text, send_at=send_at)


@signed_in
async def broadcasts_page(page: Page) -> web.StreamResponse:
    return await _compose(page)


@signed_in
async def send_broadcast(page: Page) -> web.StreamResponse:
    fields = await page.checked_form()
    if isinstance(fields, web.Response):
        return fields
    if not available(page):
        return page.render("broadcasts.html", 404, available=False)
    text = fields.get("text", "").strip()
    send_at = fields.get("send_at", "").strip()
    if not text or len(text) > MAX_TEXT:
        return await _compose(page, 422, f"メッセージは1〜{MAX_TEXT}文字で入力してください。", text, send_at)
    try:
        when = _send_at(send_at, page.timezone)
    except ValueError:
        return await _compose(page, 422, "送信日時の形式が正しくありません。", text, send_at)
    body: dict[str, Any] = {"broadcast_id": fields.get("broadcast_id", ""), "segment_id": fields.get("segment_id", ""),
                            "messages": [{"type": "text", "text": text}]}
    if when:
        body["send_at"] = when
    try:
        created = await page.gateway.call(*SEND, body=body)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        return await _compose(page, 422, f"送信できませんでした: {exc.message}", text, send_at)
    raise web.HTTPSeeOther("/dashboard/broadcasts/" + quote(str(created["broadcast_id"]), safe=""))


def progress(broadcast: dict[str, Any]) -> float:
    """The share of the audience handled so far: sent, failed, held out, left out or stopped by a cancel."""
    if broadcast.get("status") == "done":
        return 1.0
    targeted = int(broadcast.get("targeted") or 0)
    skipped = broadcast.get("skipped")
    handled = sum(int(broadcast.get(name) or 0) for name in ("sent", "failed", "held", "unsent")) + (
        sum(int(n) for n in skipped.values()) if isinstance(skipped, dict) else 0)
    return min(1.0, handled / targeted) if targeted else 0.0


@signed_in
async def broadcast_page(page: Page) -> web.StreamResponse:
    if not available(page):
        return page.render("broadcasts.html", 404, available=False)
    broadcast_id = page.request.match_info["broadcast_id"]
    try:
        broadcast = await page.gateway.get("/broadcasts/{broadcast_id}", broadcast_id=broadcast_id)
    except ApiError as exc:
        if exc.status in (404, 422):
            return page.error(404, "その配信は見つかりません。")
        raise
    return page.render("broadcast.html", broadcast_id=broadcast_id, broadcast=broadcast, progress=progress(broadcast),
                       can_cancel=broadcast.get("status") in ("scheduled", "sending")
                       and page.gateway.has("POST", "/broadcasts/{broadcast_id}/cancel"))


@signed_in
async def cancel_broadcast(page: Page) -> web.StreamResponse:
    fields = await page.checked_form()
    if isinstance(fields, web.Response):
        return fields
    broadcast_id = page.request.match_info["broadcast_id"]
    if not page.gateway.has("POST", "/broadcasts/{broadcast_id}/cancel"):
        return page.error(404, "この配信は取り消せません。")
    try:
        await page.gateway.call("POST", "/broadcasts/{broadcast_id}/cancel", broadcast_id=broadcast_id)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        return page.error(exc.status, "取り消せませんでした（送信が完了しているか、配信が見つかりません）。")
    raise web.HTTPSeeOther("/dashboard/broadcasts/" + quote(broadcast_id, safe=""))
