"""LINE's account link for shop member IDs (linkToken + nonce), as LINE documents it.

1. The bot calls `start_account_link`: LINE issues a link token for the user
   (`POST /v2/bot/user/{userId}/linkToken`, valid 10 minutes) and we answer the
   URL of the shop's own login page with `linkToken=` added.
2. The shop logs its member in, then asks our admin API for a nonce bound to
   that member ID (and, optionally, the member's browser ID) and redirects the
   user to LINE's `accountLink` dialog with the link token and our nonce.
3. LINE sends an `accountLink` webhook event; `complete_account_link` redeems
   the nonce (once, this shop, before it expires) and records the member ID
   on the customer (and links the browser, when one was named).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from linebot.v3.messaging import ApiException

from core.line_client import LineApiError, LineClient
from linking.links import LinkOutcome, LinkStatus, link_browser
from storage.customers import CustomerRepository
from storage.database import Database
from storage.link_tokens import AccountLinkConfigRepository, LinkTokenRepository, Redemption, TokenKind

NONCE_TTL = timedelta(minutes=10)

_STATUS = {
    Redemption.UNKNOWN: LinkStatus.UNKNOWN,
    Redemption.EXPIRED: LinkStatus.EXPIRED,
    Redemption.USED: LinkStatus.USED,
    Redemption.WRONG_SHOP: LinkStatus.WRONG_SHOP,
}


@dataclass(frozen=True)
class IssuedNonce:
    nonce: str
    expires_at: datetime
    redirect_url: str | None


def account_link_dialog_url(login_base: str, link_token: str, nonce: str) -> str:
    return f"{login_base}/dialog/bot/accountLink?{urlencode({'linkToken': link_token, 'nonce': nonce})}"


def with_link_token(login_url: str, link_token: str) -> str:
    return f"{login_url}{'&' if '?' in login_url else '?'}{urlencode({'linkToken': link_token})}"


async def start_account_link(db: Database, line: LineClient, shop_id: str, line_user_id: str) -> str | None:
    """The URL to send the user to (the shop's login page with the link token), or None when the
    shop has not configured one. Raises LineApiError when LINE refuses to issue a link token."""
    login_url = await AccountLinkConfigRepository(db).get_login_url(shop_id)
    if not login_url:
        return None
    try:
        issued = await line.api.issue_link_token(line_user_id)
    except ApiException as exc:
        raise LineApiError(exc.status, str(exc.body or ""), "link_token") from None
    return with_link_token(login_url, issued.link_token)


async def issue_nonce(
    db: Database, shop_id: str, shop_customer_id: str, browser_id: str | None, link_token: str | None,
    login_base: str, now: datetime,
) -> IssuedNonce:
    """A one-time nonce (256 random bits, within LINE's 10-255 characters) for a shop member."""
    nonce = secrets.token_urlsafe(32)
    data = {"shop_customer_id": shop_customer_id, "browser_id": browser_id}
    await LinkTokenRepository(db).issue(TokenKind.ACCOUNT_NONCE, nonce, shop_id, data, NONCE_TTL, now)
    redirect = account_link_dialog_url(login_base, link_token, nonce) if link_token else None
    return IssuedNonce(nonce, now + NONCE_TTL, redirect)


async def complete_account_link(
    db: Database, shop_id: str, line_user_id: str | None, nonce: str, result: str, now: datetime
) -> LinkOutcome:
    """Handle an `accountLink` event. A failed result still uses up the nonce."""
    # Redeemed for this user: if we die before the link is written, the event's re-run completes it.
    redeemed = await LinkTokenRepository(db).redeem(TokenKind.ACCOUNT_NONCE, nonce, shop_id, now, line_user_id)
    if not redeemed.ok:
        return LinkOutcome(_STATUS[redeemed.status], shop_id, line_user_id=line_user_id, method="account_link")
    if result != "ok" or not line_user_id:
        return LinkOutcome(LinkStatus.FAILED, shop_id, line_user_id=line_user_id, method="account_link")
    await CustomerRepository(db).update_fields(
        shop_id, line_user_id, {"shop_customer_id": redeemed.data["shop_customer_id"]}, now
    )
    browser_id = redeemed.data.get("browser_id")
    if browser_id:
        return await link_browser(db, shop_id, browser_id, line_user_id, "account_link", now)
    return LinkOutcome(LinkStatus.LINKED, shop_id, None, line_user_id, None, "account_link")
