"""Cart reminders as a flow of the delivery engine: per-run caches, the decision, the message.

The engine hands the flow each contact whose `flows.cart` sub-state is due
(the journey of the customer's latest cart, kept at ingest by
`flows.carts.state`), joined with its customer. The shop's settings and
catalogue are read once per run (only for shops with cart reminders on), so
planning is pure: no reads per customer, no sends, no writes. The dry run
(`flows.carts.preview`) calls the same `plan`, so a preview is what is sent.

Messages are pushed as JSON bytes: a card shown in many carts is encoded once
per run (`CartCards`), each customer's click URL joined in.

The frequency cap defers a cart reminder, and drops it (`frequency_cap`) when it
would go out more than two days after it fell due: a cart reminder that late
reminds of nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.flex import FlexLimitError
from core.flex_cards import MAX_ACTION_URI
from core.line_limits import utf16_len
from delivery.clicks import Click, click_secret, click_url
from delivery.flow import Intent, delivery_key
from delivery.windows import quiet_window
from flows.carts.journey import FLOW, STATE_KEY, CartDecision, Facts, decide
from flows.carts.message import CartCards, recovery_url
from storage.contacts import Lookup
from storage.database import Database, Document
from storage.products import ProductRepository
from storage.shop_settings import CartSettings, ShopSettingsRepository
from storage.shops import Shop

STEP = 1  # a cart gets one reminder
PRODUCT_FIELDS = {"product_id": 1, "title": 1, "image_url": 1, "price": 1, "sale_price": 1, "track_inventory": 1,
                  "continue_selling": 1, "total_stock": 1, "variants.id": 1, "variants.title": 1}


@dataclass
class ShopCarts:
    """One shop's settings and catalogue, read once per run."""

    shop: Shop
    settings: CartSettings
    products: dict[str, Document] = field(default_factory=dict)
    click_key: bytes = b""
    cards: CartCards | None = None  # the run's encoded cards (built on first use)


class CartsFlow:
    """The cart-abandonment flow (PRODUCT.md §4); one per run, holding the run's caches."""

    name = FLOW
    lookups: tuple[Lookup, ...] = ()

    def __init__(self, public_base: str) -> None:
        self._public_base = public_base
        self._shops: dict[str, ShopCarts | None] = {}

    def owns(self, state_key: str) -> bool:
        return state_key == STATE_KEY

    async def prepare(self, database: Database, shop_ids: Collection[str]) -> None:
        missing = sorted(s for s in shop_ids if s not in self._shops)
        if not missing:
            return
        docs = {doc["_id"]: doc async for doc in database.shops.find({"_id": {"$in": missing}})}
        settings = await ShopSettingsRepository(database).get_many(missing, CartSettings)
        products = ProductRepository(database)
        for shop_id in missing:
            doc = docs.get(shop_id)
            if doc is None:
                self._shops[shop_id] = None
                continue
            shop = Shop.from_doc(doc)
            cart = ShopCarts(shop, settings[shop_id], click_key=click_secret(shop.line.channel_secret))
            if cart.settings.enabled:  # a shop with cart reminders off only ends journeys: no catalogue needed
                cart.products = {p["product_id"]: p async for p in products.catalogue(shop_id, PRODUCT_FIELDS)}
            self._shops[shop_id] = cart

    def settings(self, shop_id: str) -> CartSettings | None:
        shop = self._shops.get(shop_id)
        return shop.settings if shop else None

    def plan(self, contact: Document, state_key: str, state: Mapping[str, Any], now: datetime) -> Intent:
        shop_id = str(contact.get("shop_id") or "")
        shop = self._shops.get(shop_id)
        token = str(state.get("token") or "")
        # A send applies to its cart however the cart changed meanwhile (it was reminded: never again); anything
        # else only to the version it was decided on (new activity during a skip or a wait decides again).
        expects = {"token": state.get("token"), "cart_v": state.get("cart_v")}
        if shop is None:
            return Intent(flow=FLOW, state_key=STATE_KEY, kind="end", state={"due_at": None}, reason="unknown_shop",
                          expects=expects)
        decision = decide(Facts.of(contact, state), shop.settings, now)
        if decision.kind in ("wait", "end"):
            return Intent(flow=FLOW, state_key=STATE_KEY, kind=decision.kind, state=decision.state,
                          reason=decision.reason, due_at=decision.due_at, expects=expects)
        user = str(contact.get("line_user_id") or "")
        key = delivery_key(shop_id, user, FLOW, token, STEP)
        detail = {"stage": state.get("stage"), "value": int(state.get("value") or 0),
                  "lines": int(state.get("line_count") or 0)}
        if decision.kind == "skip":
            return self._skip(decision, decision.reason, token, key, detail, expects)
        template = shop.settings.recovery_url_template or ""
        url = click_url(self._public_base, shop.click_key,
                        Click(shop_id, FLOW, STEP, key, f"u:{recovery_url(template, token)}"))
        if utf16_len(url) > MAX_ACTION_URI:  # a very long template with a long token: LINE would refuse it
            return self._skip(decision, "recovery_url_too_long", token, key, detail, expects)
        if shop.cards is None:
            shop.cards = CartCards(shop.settings)
        try:
            encoded = shop.cards.encoded(str(state.get("stage") or "cart"), state.get("items") or [],
                                         int(state.get("line_count") or 0), shop.products, url)
        except FlexLimitError:  # never seen with validated input; a skip, not a failed batch
            return self._skip(decision, "message_too_large", token, key, detail, expects)
        return Intent(flow=FLOW, state_key=STATE_KEY, kind="send", state=decision.state, step=STEP, cycle=token,
                      due_at=decision.due_at, encoded=encoded, key=key,
                      window=quiet_window(shop.settings.quiet_hours), stale_after=decision.stale_after,
                      detail=detail, expects={"token": state.get("token")})

    @staticmethod
    def _skip(decision: CartDecision, reason: str | None, token: str, key: str, detail: dict[str, Any],
              expects: dict[str, Any]) -> Intent:
        state = {**decision.state, "status": "ended", "reason": reason, "due_at": None}
        state.pop("handled", None)  # a cart skipped (not reminded) may be reminded after new activity
        state.pop("reminded_at", None)
        return Intent(flow=FLOW, state_key=STATE_KEY, kind="skip", state=state, step=STEP, cycle=token,
                      reason=reason, due_at=decision.due_at, key=key, detail=detail, expects=expects)
