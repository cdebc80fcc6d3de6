"""Per-shop settings documents: typed, validated, with defaults.

Each section is one pydantic model; what is stored is what the merchant PUT,
and reading always returns the effective settings (defaults filled in).
Collection `shop_settings`, `_id` = "<shop_id>:<section>".
"""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from core.line_limits import MAX_ALT_TEXT, MAX_CHAT_BAR_TEXT, MAX_FLEX_ACTION_LABEL, MAX_TEXT, utf16_len
from storage.database import Database
from storage.keys import settings_key

COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
# A recovery URL goes inside a signed click link, and LINE takes at most 1,000 characters in a button: a PUT
# takes at most this many. Stored settings are read with the older, wider limit (`STORED_RECOVERY_TEMPLATE`),
# so a template saved before the limit tightened still reads (its reminders are skipped as too long, named).
MAX_RECOVERY_TEMPLATE = 400
STORED_RECOVERY_TEMPLATE = 1000
# The validation context of settings read back from the database (`ShopSettingsRepository`).
STORED = {"stored": True}


def _utf16_max(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        if utf16_len(value) > limit:
            raise ValueError(f"at most {limit} characters (UTF-16 units, as LINE counts)")
        return value

    return AfterValidator(check)


def _colour(value: str) -> str:
    if not COLOUR.match(value):
        raise ValueError("must be a colour like #RRGGBB")
    return value.upper()


def _clock_time(value: str) -> str:
    try:
        time.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a time HH:MM (00:00-23:59)") from None
    if not re.fullmatch(r"\d{2}:\d{2}", value):
        raise ValueError("must be a time HH:MM (00:00-23:59)")
    return value


Colour = Annotated[str, AfterValidator(_colour)]
ClockTime = Annotated[str, AfterValidator(_clock_time)]
ShortText = Annotated[str, Field(min_length=1), _utf16_max(100)]
LabelText = Annotated[str, Field(min_length=1), _utf16_max(20)]
ButtonText = Annotated[str, Field(min_length=1), _utf16_max(MAX_FLEX_ACTION_LABEL)]
AltText = Annotated[str, Field(min_length=1), _utf16_max(MAX_ALT_TEXT)]
MessageText = Annotated[str, Field(min_length=1), _utf16_max(MAX_TEXT)]
Keyword = Annotated[str, Field(min_length=1, max_length=50)]


class SettingsSection(BaseModel):
    """A settings body: unknown fields refused; every field has a default."""

    model_config = ConfigDict(extra="forbid")


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    start: ClockTime = "21:00"
    end: ClockTime = "09:00"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class ReminderStep(BaseModel):
    """One browse-reminder message (the seed's admin UI has these per step)."""

    model_config = ConfigDict(extra="forbid")
    delay_days: int = Field(ge=1, le=90, description="days after the cycle's first product view")
    title: ShortText = "今週の注目商品🌟"
    title_color: Colour = "#111111"
    label: LabelText = "おすすめ"
    label_color: Colour = "#FFFFFF"
    label_background_color: Colour = "#06C755"
    low_stock_threshold: int = Field(default=3, ge=0, le=100_000)
    low_stock_label: LabelText = "残りわずか!"
    low_stock_label_color: Colour = "#FFFFFF"
    low_stock_label_background_color: Colour = "#E53935"
    coupon_code: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    coupon_text: ShortText | None = None
    button_text: ButtonText = "商品を見る"
    button_color: Colour = "#06C755"
    alt_text: AltText = "閲覧した商品のご案内"


def _default_steps() -> list[ReminderStep]:
    return [
        ReminderStep(delay_days=3),
        ReminderStep(delay_days=7),
        # No coupon unless the merchant sets one: a default code would not exist in the shop.
        ReminderStep(delay_days=14, title="まだ迷っていませんか?"),
    ]


class ReminderSettings(SettingsSection):
    enabled: bool = False
    steps: list[ReminderStep] = Field(default_factory=_default_steps, min_length=1, max_length=3)
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    recent_purchase_days: int = Field(default=14, ge=0, le=365, description="bought within: no reminders")
    bought_product_exclusion_days: int = Field(default=180, ge=0, le=730, description="never show products bought within")
    max_products: int = Field(default=5, ge=1, le=10)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[ReminderStep]) -> list[ReminderStep]:
        for index in range(1, len(steps)):
            if steps[index].delay_days <= steps[index - 1].delay_days:
                raise ValueError(f"steps[{index}].delay_days must be greater than the previous step's")
        return steps


class CartSettings(SettingsSection):
    """Cart and checkout abandonment reminders (カゴ落ち): one message per cart, `delay_hours` after its last activity."""

    enabled: bool = False
    delay_hours: int = Field(default=3, ge=1, le=24)
    title: ShortText = "カートに商品が残っています"
    message_text: MessageText = "お買い忘れはありませんか?カートの商品はこちらからご購入いただけます。"
    button_text: ButtonText = "カートを見る"
    button_color: Colour = "#06C755"
    alt_text: AltText = "カートに商品が残っています"
    recovery_url_template: Annotated[str, Field(max_length=STORED_RECOVERY_TEMPLATE)] | None = Field(
        default=None, validate_default=True, description="URL that reopens the cart; must contain {cart_token}"
    )
    cooldown_days: int = Field(default=3, ge=0, le=90, description="after a reminder, none again for this long")
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    # The checkout stage (the customer reached the checkout and left) has its own texts.
    checkout_title: ShortText = "ご購入手続きが完了していません"
    checkout_message_text: MessageText = "ご購入手続きの途中です。カートの商品はこちらからお手続きを再開できます。"
    checkout_alt_text: AltText = "ご購入手続きが完了していません"
    low_stock_threshold: int = Field(default=3, ge=0, le=100_000, description="summed stock at or below: low-stock label")
    low_stock_label: LabelText = "残りわずか!"
    sold_out_label: LabelText = "在庫切れ"

    @field_validator("recovery_url_template")
    @classmethod
    def _template(cls, template: str | None, info: ValidationInfo) -> str | None:
        if template is not None:
            if not template.startswith(("https://", "http://")) or "{cart_token}" not in template:
                raise ValueError("must be an http(s) URL containing {cart_token}")
            if len(template) > MAX_RECOVERY_TEMPLATE and not (info.context or {}).get("stored"):
                raise ValueError(f"at most {MAX_RECOVERY_TEMPLATE} characters (it goes inside a click link)")
        elif info.data.get("enabled"):
            raise ValueError("required when enabled")
        return template


class PointsSettings(SettingsSection):
    earned_notice: bool = True
    monthly_notice: bool = False
    monthly_day: int = Field(default=1, ge=1, le=28)
    monthly_hour: int = Field(default=10, ge=0, le=23)
    expiry_reminder: bool = True
    expiry_lead_days: int = Field(default=7, ge=1, le=90)
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    button_text: ButtonText = "ショップを見る"
    color: Colour | None = Field(default=None, description="the notices' accent colour; default: the rich menu's button colour")


class Keywords(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: list[Keyword] = Field(default_factory=lambda: ["ポイント", "ポイント確認"], max_length=10)
    history: list[Keyword] = Field(default_factory=lambda: ["購入履歴"], max_length=10)
    opt_out: list[Keyword] = Field(default_factory=lambda: ["配信停止"], max_length=10)
    opt_in: list[Keyword] = Field(default_factory=lambda: ["配信再開"], max_length=10)
    link: list[Keyword] = Field(default_factory=lambda: ["連携"], max_length=10)


class MessagingSettings(SettingsSection):
    welcome_text: MessageText = "友だち追加ありがとうございます!ショップのアカウントと連携すると、気になる商品のお知らせやポイント情報をお届けします。"
    welcome_link_button_text: ButtonText = "ブラウザと連携する"
    default_reply: MessageText | None = None
    keywords: Keywords = Field(default_factory=Keywords)
    shop_url: Annotated[str, Field(max_length=1000, pattern=r"^https?://")] | None = None


RichMenuAction = Literal["points", "history", "link", "opt_out", "opt_in", "url"]
RichMenuSize = Literal["large", "compact"]  # the two heights a rich menu comes in


class RichMenuButton(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Annotated[str, Field(min_length=1), _utf16_max(20)]
    action: RichMenuAction
    url: Annotated[str, Field(max_length=1000, pattern=r"^https?://")] | None = None

    @model_validator(mode="after")
    def _url_for_url_action(self) -> RichMenuButton:
        if (self.action == "url") != (self.url is not None):
            raise ValueError("url is required for action 'url' and only for it")
        return self


def _default_buttons() -> list[RichMenuButton]:
    return [
        RichMenuButton(label="ポイント確認", action="points"),
        RichMenuButton(label="購入履歴", action="history"),
        RichMenuButton(label="ブラウザ連携", action="link"),
    ]


class RichMenuSettings(SettingsSection):
    size: RichMenuSize = "compact"
    chat_bar_text: Annotated[str, Field(min_length=1), _utf16_max(MAX_CHAT_BAR_TEXT)] = "メニュー"
    background_color: Colour = "#FFFFFF"
    button_color: Colour = "#06C755"
    text_color: Colour = "#FFFFFF"
    buttons: list[RichMenuButton] = Field(default_factory=_default_buttons, min_length=1, max_length=6)


class TrackingSettings(SettingsSection):
    allowed_origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$", max_length=200)]] = Field(
        default_factory=list, max_length=20, description="shop page origins allowed to post browser events (CORS)"
    )
    attribution_window_days: int = Field(default=7, ge=1, le=90, description="a purchase this soon after a message is a conversion")
    server_side_events: bool = Field(
        default=False, description="accept events without an allowed Origin when sent with the shop's API key "
                                   "(Authorization: Bearer), e.g. from the shop platform's servers")
    events_per_minute: int = Field(
        default=60_000, ge=100, le=1_000_000, description="the shop's budget of browser events per minute (all browsers)")


class FrequencyCap(BaseModel):
    """At most this many marketing messages per customer, across every flow (rolling 24 hours / 7 days)."""

    model_config = ConfigDict(extra="forbid")
    per_day: Annotated[int, Field(strict=True, ge=1, le=20)] | None = None
    per_week: Annotated[int, Field(strict=True, ge=1, le=50)] | None = None


class DeliverySettings(SettingsSection):
    """The delivery policy of every marketing flow (`delivery.policy`)."""

    frequency_cap: FrequencyCap = Field(default_factory=FrequencyCap)
    holdout_percent: int = Field(default=0, strict=True, ge=0, le=50,
                                 description="a stable random share of customers per flow, recorded but not sent to")


class TagRules(SettingsSection):
    """Tags the server keeps by itself (seed 003: what subscription apps do to customer tags)."""

    purchase_count_tag: bool = Field(default=False, description="keep a `purchase-count:N` tag current at order ingest")
    purchase_count_prefix: Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[^\x00-\x1f\x7f*]+$")] = (
        "purchase-count:")
    resume_clears_pause: bool = Field(
        default=False, description="adding `<x>-resume` (or `<x>-resume:…`) removes `<x>-pause` and `<x>-pause:…`")


SECTIONS: dict[str, type[SettingsSection]] = {
    "reminders": ReminderSettings,
    "cart": CartSettings,
    "points": PointsSettings,
    "messaging": MessagingSettings,
    "rich_menu": RichMenuSettings,
    "tracking": TrackingSettings,
    "delivery": DeliverySettings,
    "tags": TagRules,
}
S = TypeVar("S", bound=SettingsSection)


def _section_name(model: type[SettingsSection]) -> str:
    return next(name for name, section in SECTIONS.items() if section is model)


class ShopSettingsRepository:
    def __init__(self, database: Database) -> None:
        self._collection = database["shop_settings"]

    async def get(self, shop_id: str, model: type[S]) -> S:
        """The effective settings of one section (defaults where nothing was stored)."""
        doc = await self._collection.find_one({"_id": settings_key(shop_id, _section_name(model))})
        return model.model_validate(doc["data"] if doc else {}, context=STORED)

    async def get_many(self, shop_ids: list[str], model: type[S]) -> dict[str, S]:
        """One round trip for a batch of shops (the scheduler's hot path)."""
        name = _section_name(model)
        found = {
            doc["shop_id"]: model.model_validate(doc["data"], context=STORED)
            async for doc in self._collection.find({"_id": {"$in": [settings_key(shop_id, name) for shop_id in shop_ids]}})
        }
        return {shop_id: found.get(shop_id) or model() for shop_id in shop_ids}

    async def put(self, shop_id: str, settings: SettingsSection, now: datetime) -> None:
        name = _section_name(type(settings))
        await self._collection.update_one(
            {"_id": settings_key(shop_id, name)},
            {"$set": {"shop_id": shop_id, "section": name, "data": settings.model_dump(mode="json"), "updated_at": now}},
            upsert=True,
        )
