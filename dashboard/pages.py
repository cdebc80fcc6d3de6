"""What every signed-in page shares: the session check, the admin gateway, the period and the page frame."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.typedefs import CLOCK
from core.errors import ApiError
from dashboard.gateway import AdminGateway
from dashboard.render import render
from dashboard.session import SignedIn, current, same_token

LOGIN_PATH = "/dashboard/login"
MAX_FIELD = 2000  # characters of one form field we look at (a longer one is refused, never cut)


@dataclass(frozen=True)
class Page:
    """One signed-in request: the shop, its session and the admin API it may call."""

    request: web.Request
    auth: SignedIn
    gateway: AdminGateway

    @property
    def shop_id(self) -> str:
        return self.auth.shop.shop_id

    @property
    def timezone(self) -> str:
        return self.auth.shop.timezone

    def now(self) -> datetime:
        return self.request.app[CLOCK].now()

    def period_query(self) -> dict[str, str]:
        """`from`/`to` of the page's URL, passed to the report routes as they are (they validate them)."""
        return {name: value for name in ("from", "to") if (value := self.request.query.get(name, "").strip())}

    def period_fields(self, report: dict[str, Any] | None) -> dict[str, str]:
        """The dates to show in the period form: the asked ones, else the report's own (shop-local) period."""
        asked = self.period_query()
        if report is None:
            return {"from": asked.get("from", ""), "to": asked.get("to", "")}
        zone = ZoneInfo(self.timezone)
        start = datetime.fromisoformat(report["from"]).astimezone(zone).date().isoformat()
        end = (datetime.fromisoformat(report["to"]) - timedelta(microseconds=1)).astimezone(zone).date().isoformat()
        return {"from": asked.get("from", start), "to": asked.get("to", end)}

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        return render(template, status, shop=self.auth.shop, csrf=self.auth.csrf, timezone=self.timezone,
                      path=self.request.path, **context)

    def error(self, status: int, message: str) -> web.Response:
        return self.render("error.html", status, title="エラー", message=message)

    async def form(self) -> dict[str, str]:
        """The posted form's text fields (files and over-long values refused)."""
        return await form_fields(self.request)

    async def checked_form(self) -> dict[str, str] | web.Response:
        """The form if it carries this session's CSRF token; otherwise the 403 page (nothing done)."""
        fields = await self.form()
        if not same_token(self.auth.csrf, fields.get("csrf")):
            return self.error(403, "フォームの有効期限が切れたか、不正な送信です。ページを開き直してからもう一度お試しください。")
        return fields


async def form_fields(request: web.Request) -> dict[str, str]:
    try:
        posted = await request.post()
    except (ValueError, LookupError):  # malformed body, bad encoding, unknown charset: an empty form (refused)
        return {}
    fields: dict[str, str] = {}
    for name, value in posted.items():
        if isinstance(value, str) and len(value) <= MAX_FIELD and name not in fields:
            fields[name] = value
    return fields


PageHandler = Callable[[Page], Awaitable[web.StreamResponse]]


def signed_in(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page for a signed-in shop: without a live session the browser is sent to the sign-in page."""

    async def handle(request: web.Request) -> web.StreamResponse:
        auth = await current(request)
        if auth is None:
            if request.method == "GET":
                raise web.HTTPSeeOther(LOGIN_PATH)
            return render("error.html", 403, title="ログインが必要です", shop=None, csrf="", timezone="Asia/Tokyo",
                          path=request.path, message="セッションが切れています。もう一度ログインしてください。")
        page = Page(request, auth, AdminGateway(request, auth.shop))
        try:
            return await handler(page)
        except ApiError as exc:
            if exc.status >= 500:
                return page.error(502, "データを取得できませんでした。しばらくしてからもう一度お試しください。")
            prefix = "入力が正しくありません" if exc.status == 422 else "表示できません"
            return page.error(exc.status, f"{prefix}（{exc.message}）")

    handle.__name__ = handler.__name__
    return handle
