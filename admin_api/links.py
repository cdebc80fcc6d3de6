"""Admin routes for linking: import a browser ↔ LINE user link, the linking report,
and the account-link nonce for a shop member ID (LINE's linkToken + nonce flow)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from admin_api.models import Identifier, StrictModel, Token
from admin_api.registry import SHOP_PATH, AdminApi, Call
from bot.typedefs import SETTINGS
from linking.account_link import issue_nonce
from linking.counts import link_counts
from linking.links import link_browser
from linking.models import BrowserId, LineUserId
from storage.link_tokens import AccountLinkConfigRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`


class LinkImport(StrictModel):
    browser_id: BrowserId
    line_user_id: LineUserId


class LinkResult(BaseModel):
    browser_id: str
    line_user_id: str
    status: str = Field(description="linked, already_linked or moved (the browser belonged to another LINE user)")
    previous_line_user_id: str | None


class LinkCountsView(BaseModel):
    friends: int
    blocked: int
    linked_browsers: int = Field(description="ブラウザ紐づき数: browsers linked to a LINE user")
    linked_customers: int
    reachable_customers: int = Field(description="friend, not blocked, not opted out, linked")


class NonceRequest(StrictModel):
    shop_customer_id: Identifier
    browser_id: BrowserId | None = None
    link_token: Token | None = Field(default=None, description="the linkToken LINE gave the user; echoed into redirect_url")


class NonceView(BaseModel):
    nonce: str
    expires_at: datetime
    redirect_url: str | None = Field(description="LINE's accountLink dialog URL (only when link_token was given)")


LoginUrl = Annotated[str, Field(max_length=1000, pattern=r"^https?://\S+$")]


class AccountLinkConfig(StrictModel):
    login_url: LoginUrl | None = Field(description="the shop's login page; the bot sends users there with ?linkToken=")


@routes.route(
    "POST", SHOP_PATH + "/links", summary="Import an existing browser ↔ LINE user link", body=LinkImport,
    response=LinkResult, status=201, tag="linking",
)
async def import_link(call: Call[LinkImport, None]) -> LinkResult:
    body = call.body
    outcome = await link_browser(call.db, call.current_shop.shop_id, body.browser_id, body.line_user_id, "import",
                                 call.now())
    result = LinkResult(
        browser_id=body.browser_id, line_user_id=body.line_user_id, status=outcome.status.value,
        previous_line_user_id=outcome.previous_line_user_id,
    )
    return result


@routes.route(
    "GET", SHOP_PATH + "/reports/links", summary="Friends, blocked, linked browsers, linked and reachable customers",
    response=LinkCountsView, tag="linking",
)
async def link_report(call: Call[None, None]) -> LinkCountsView:
    counts = await link_counts(call.db, call.current_shop.shop_id)
    return LinkCountsView(**counts.as_dict())


@routes.route(
    "POST", SHOP_PATH + "/account-link/nonces", summary="Issue the account-link nonce for a shop member",
    body=NonceRequest, response=NonceView, status=201, tag="linking",
)
async def create_nonce(call: Call[NonceRequest, None]) -> NonceView:
    body = call.body
    issued = await issue_nonce(
        call.db, call.current_shop.shop_id, body.shop_customer_id, body.browser_id, body.link_token,
        call.app[SETTINGS].line_login_base, call.now(),
    )
    return NonceView(nonce=issued.nonce, expires_at=issued.expires_at, redirect_url=issued.redirect_url)


@routes.route(
    "PUT", SHOP_PATH + "/account-link", summary="Set the shop's login page for LINE's account link",
    body=AccountLinkConfig, response=AccountLinkConfig, tag="linking",
)
async def put_account_link(call: Call[AccountLinkConfig, None]) -> AccountLinkConfig:
    await AccountLinkConfigRepository(call.db).set_login_url(call.current_shop.shop_id, call.body.login_url, call.now())
    return call.body


@routes.route(
    "GET", SHOP_PATH + "/account-link", summary="The shop's login page for LINE's account link",
    response=AccountLinkConfig, tag="linking",
)
async def get_account_link(call: Call[None, None]) -> AccountLinkConfig:
    login_url = await AccountLinkConfigRepository(call.db).get_login_url(call.current_shop.shop_id)
    return AccountLinkConfig(login_url=login_url)
