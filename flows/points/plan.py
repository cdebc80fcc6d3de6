"""The points notices as flows of the delivery engine: earned points, the monthly balance, expiry reminders.

Three flows, each with its own sub-state in the contact (`points_earned`,
`points_monthly`, `points_expiry`), its own report, holdout and attribution,
sharing one per-run cache of the shops' settings and looks (`PointsShops`,
read once per shop and run). Each plans from the contact's joined customer
(`customers.points`) alone: no reads per customer, no sends, no writes.

Every notice is a marketing message (PRODUCT.md §11): the policy applies the
shop's quiet hours (`PUT /settings/points`), the frequency cap and the
holdout, and never lets one reach a blocked, unfollowed or opted-out customer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.clock import as_utc
from delivery.clicks import Click, click_secret, click_url
from delivery.flow import Intent, delivery_key
from delivery.windows import quiet_window
from flows.points.decide import (
    Decision,
    Earned,
    Expiring,
    Monthly,
    PointsFacts,
    decide_earned,
    decide_expiry,
    decide_monthly,
)
from flows.points.message import Style, notice_message
from storage.contacts import Lookup
from storage.database import Database, Document
from storage.shop_settings import MessagingSettings, PointsSettings, RichMenuSettings, ShopSettingsRepository
from storage.shops import Shop

EARNED = "points_earned"  # each flow's report name, and its key in a contact's `flows`
MONTHLY = "points_monthly"
EXPIRY = "points_expiry"
FLOWS = (EARNED, MONTHLY, EXPIRY)
STEP = 1  # each notice is one message: step 1 in reports

Decide = Callable[[Mapping[str, Any], PointsFacts, PointsSettings, datetime], Decision]


@dataclass(frozen=True)
class ShopLook:
    """One shop's points settings and how its notices look, read once per run."""

    shop: Shop
    settings: PointsSettings
    style: Style
    shop_url: str | None
    click_key: bytes


class PointsShops:
    """The per-run cache the three notice flows share (one read of each settings section per batch of shops)."""

    def __init__(self) -> None:
        self._shops: dict[str, ShopLook | None] = {}

    async def load(self, database: Database, shop_ids: Collection[str]) -> None:
        missing = sorted(s for s in shop_ids if s not in self._shops)
        if not missing:
            return
        docs = {doc["_id"]: doc async for doc in database.shops.find({"_id": {"$in": missing}})}
        repo = ShopSettingsRepository(database)
        settings = await repo.get_many(missing, PointsSettings)
        messaging = await repo.get_many(missing, MessagingSettings)
        menus = await repo.get_many(missing, RichMenuSettings)
        for shop_id in missing:
            doc = docs.get(shop_id)
            if doc is None:
                self._shops[shop_id] = None
                continue
            shop = Shop.from_doc(doc)
            own, menu = settings[shop_id], menus[shop_id]
            style = Style(shop.name, shop.timezone, own.color or menu.button_color,
                          menu.text_color if own.color is None else "#FFFFFF", own.button_text)
            self._shops[shop_id] = ShopLook(shop, own, style, messaging[shop_id].shop_url,
                                            click_secret(shop.line.channel_secret))

    def get(self, shop_id: str) -> ShopLook | None:
        return self._shops.get(shop_id)


class PointsNotice:
    """One of the three notices (`points_flows` makes them); one per run, sharing the run's `PointsShops`."""

    lookups: tuple[Lookup, ...] = ()  # the customer is joined to every contact already

    def __init__(self, name: str, decide: Decide, shops: PointsShops, public_base: str) -> None:
        self.name = name
        self._decide = decide
        self._shops = shops
        self._public_base = public_base

    def owns(self, state_key: str) -> bool:
        return state_key == self.name

    async def prepare(self, database: Database, shop_ids: Collection[str]) -> None:
        await self._shops.load(database, shop_ids)

    def plan(self, contact: Document, state_key: str, state: Mapping[str, Any], now: datetime) -> Intent:
        shop_id = str(contact.get("shop_id") or "")
        look = self._shops.get(shop_id)
        due = state.get("due_at")
        due_at = as_utc(due) if due is not None else None
        if look is None:
            return Intent(flow=self.name, state_key=state_key, kind="end", state={"due_at": None},
                          reason="unknown_shop")
        decision = self._decide(state, PointsFacts.of(contact.get("customer")), look.settings, now)
        if decision.kind not in ("send", "skip"):
            return Intent(flow=self.name, state_key=state_key, kind=decision.kind, state=decision.state,
                          reason=decision.reason, due_at=due_at, expects=decision.expects)
        user = str(contact.get("line_user_id") or "")
        key = delivery_key(shop_id, user, self.name, decision.cycle, STEP)
        messages = None
        if decision.kind == "send" and decision.content is not None:
            button = None
            if look.shop_url:
                button = click_url(self._public_base, look.click_key,
                                   Click(shop_id, self.name, STEP, key, f"u:{look.shop_url}"))
            messages = [notice_message(decision.content, look.style, button)]
        return Intent(flow=self.name, state_key=state_key, kind=decision.kind, state=decision.state, step=STEP,
                      cycle=decision.cycle, reason=decision.reason, due_at=due_at, messages=messages, key=key,
                      window=quiet_window(look.settings.quiet_hours), stale_after=decision.stale_after,
                      detail=_detail(decision), expects=decision.expects)


def _detail(decision: Decision) -> dict[str, Any]:
    """What the record keeps of the notice (the figures it showed)."""
    content = decision.content
    if isinstance(content, Earned):
        return {"points": content.amount, "balance": content.balance}
    if isinstance(content, Monthly):
        return {"balance": content.balance}
    if isinstance(content, Expiring):
        return {"points": content.amount, "expires_at": content.expires_at, "balance": content.balance}
    return {}


def points_flows(public_base: str) -> list[PointsNotice]:
    """Fresh notice flows for one engine run."""
    shops = PointsShops()
    return [PointsNotice(EARNED, decide_earned, shops, public_base),
            PointsNotice(MONTHLY, decide_monthly, shops, public_base),
            PointsNotice(EXPIRY, decide_expiry, shops, public_base)]
