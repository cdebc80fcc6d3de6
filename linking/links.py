"""THE way a browser gets linked to a LINE user, whatever the method.

LINE Login, chat codes, account link and the admin import all end here, so the
rules hold once: a browser belongs to at most one LINE user per shop; it moves
only through a new successful link, which is recorded in `link_history`; once
linked, the browser's earlier product views count for the customer; the
customer's `linked` / `browser_ids` follow; `browser_linked` (a durable signal) tells the
reminder engine to recompute. Safe to call again after a crash (idempotent).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from storage.browsers import BrowserRepository
from storage.customers import CustomerRepository
from storage.database import Database

log = logging.getLogger("linecrm.linking")

LinkMethod = Literal["line_login", "chat_code", "account_link", "import"]
_ATTEMPTS = 5


class LinkStatus(enum.StrEnum):
    LINKED = "linked"
    ALREADY_LINKED = "already_linked"
    MOVED = "moved"
    EXPIRED = "expired"
    USED = "used"
    UNKNOWN = "unknown"
    WRONG_SHOP = "wrong_shop"
    FAILED = "failed"


MESSAGES: dict[LinkStatus, str] = {
    LinkStatus.LINKED: "ブラウザとの連携が完了しました。気になる商品のお知らせをお届けします。",
    LinkStatus.ALREADY_LINKED: "このブラウザはすでに連携済みです。",
    LinkStatus.MOVED: "ブラウザとの連携が完了しました。気になる商品のお知らせをお届けします。",
    LinkStatus.EXPIRED: "この連携コードは有効期限が切れています。もう一度ショップの連携ページからお試しください。",
    LinkStatus.USED: "この連携コードはすでに使用されています。もう一度ショップの連携ページからお試しください。",
    LinkStatus.UNKNOWN: "この連携コードは無効です。ショップの連携ページに表示されたコードをお送りください。",
    LinkStatus.WRONG_SHOP: "この連携コードは無効です。ショップの連携ページに表示されたコードをお送りください。",
    LinkStatus.FAILED: "連携できませんでした。お手数ですがもう一度お試しください。",
}


@dataclass(frozen=True)
class LinkOutcome:
    """What happened, for the page or the reply (`message` is customer-facing Japanese)."""

    status: LinkStatus
    shop_id: str
    browser_id: str | None = None
    line_user_id: str | None = None
    previous_line_user_id: str | None = None
    method: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (LinkStatus.LINKED, LinkStatus.ALREADY_LINKED, LinkStatus.MOVED)

    @property
    def message(self) -> str:
        return MESSAGES[self.status]


class LinkContention(Exception):
    """The browser kept changing owner under us (should not happen outside a storm of links)."""


async def link_browser(
    db: Database, shop_id: str, browser_id: str, line_user_id: str, method: LinkMethod, now: datetime
) -> LinkOutcome:
    """Point the browser at the LINE user and carry its history over to the customer."""
    browsers = BrowserRepository(db)
    customers = CustomerRepository(db)
    # Written first: a crash anywhere below leaves it for the worker, whose listeners rebuild from the link.
    intent = await db.signals.browser_linked.intend(db, shop_id, browser_id, line_user_id, now, now=now)
    previous: str | None = None
    for _ in range(_ATTEMPTS):
        doc = await browsers.get(shop_id, browser_id)
        previous = doc.get("line_user_id") if doc else None
        if previous == line_user_id:
            status = LinkStatus.ALREADY_LINKED
            break
        # Compare-and-set on the owner we read: a concurrent link makes us re-read, never overwrite blindly.
        if await browsers.set_link(shop_id, browser_id, line_user_id, method, previous, now):
            status = LinkStatus.MOVED if previous else LinkStatus.LINKED
            break
    else:
        raise LinkContention(f"a browser of shop {shop_id} kept changing owner")
    # Also done when already linked: repairs a link interrupted between these steps.
    await browsers.claim_views(shop_id, browser_id, line_user_id)
    await customers.add_browser(shop_id, line_user_id, browser_id, now)
    if status is LinkStatus.MOVED and previous:
        await customers.remove_browser(shop_id, previous, browser_id, now)
        log.info("browser moved to another LINE user shop=%s method=%s", shop_id, method)
    await intent.deliver()
    return LinkOutcome(status, shop_id, browser_id, line_user_id, previous, method)
