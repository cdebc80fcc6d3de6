"""Admin routes for shops: creation (operator), reading and updating (shop key), key rotation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from admin_api.models import Name, StrictModel, TimeZoneName, Token
from admin_api.registry import SHOP_PATH, AdminApi, Call
from core.errors import ApiError
from storage.shops import LineCredentials, ShopRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`

LoginChannelId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]


class ShopCreate(StrictModel):
    name: Name
    channel_secret: Token = Field(description="LINE Messaging API channel secret (write-only)")
    channel_access_token: Token = Field(description="LINE Messaging API channel access token (write-only)")
    line_login_channel_id: LoginChannelId | None = None
    line_login_channel_secret: Token | None = Field(default=None, description="write-only")
    timezone: TimeZoneName = "Asia/Tokyo"


class ShopUpdate(StrictModel):
    name: Name | None = None
    channel_secret: Token | None = None
    channel_access_token: Token | None = None
    line_login_channel_id: LoginChannelId | None = None
    line_login_channel_secret: Token | None = None
    timezone: TimeZoneName | None = None


class ShopCreated(BaseModel):
    shop_id: str
    api_key: str = Field(description="shown once; store it now")


class ShopView(BaseModel):
    shop_id: str
    name: str
    timezone: str
    line_login_channel_id: str | None
    line_credentials_set: bool
    created_at: datetime


class ApiKeyRotated(BaseModel):
    api_key: str = Field(description="the new key (shown once); the previous keys stop working now")


@routes.route("POST", "/shops", summary="Create a shop", auth="operator", body=ShopCreate, response=ShopCreated, status=201)
async def create_shop(call: Call[ShopCreate, None]) -> ShopCreated:
    body = call.body
    credentials = LineCredentials(
        channel_secret=body.channel_secret,
        channel_access_token=body.channel_access_token,
        login_channel_id=body.line_login_channel_id,
        login_channel_secret=body.line_login_channel_secret,
    )
    shop, api_key = await ShopRepository(call.db).create(
        name=body.name, timezone=body.timezone, line=credentials, now=call.now()
    )
    return ShopCreated(shop_id=shop.shop_id, api_key=api_key)


@routes.route("GET", SHOP_PATH, summary="Read the shop (without secrets)", response=ShopView)
async def get_shop(call: Call[None, None]) -> dict[str, Any]:
    return call.current_shop.public_view()


@routes.route("PATCH", SHOP_PATH, summary="Update the shop's name, time zone or LINE credentials", body=ShopUpdate, response=ShopView)
async def update_shop(call: Call[ShopUpdate, None]) -> dict[str, Any]:
    mapping = {
        "name": "name",
        "timezone": "timezone",
        "channel_secret": "line.channel_secret",
        "channel_access_token": "line.channel_access_token",
        "line_login_channel_id": "line.login_channel_id",
        "line_login_channel_secret": "line.login_channel_secret",
    }
    fields = call.body.model_dump(exclude_unset=True)
    for key, value in fields.items():
        if value is None:
            raise ApiError(422, "validation_error", f"{key}: cannot be null", key)
    changes = {mapping[key]: value for key, value in fields.items()}
    shop = call.current_shop
    if changes:
        updated = await ShopRepository(call.db).update(shop.shop_id, changes, call.now())
        if updated is None:
            raise ApiError(404, "not_found", "shop not found")
        shop = updated
    return shop.public_view()


@routes.route("POST", SHOP_PATH + "/api-key", summary="Rotate the shop's API key", response=ApiKeyRotated)
async def rotate_api_key(call: Call[None, None]) -> ApiKeyRotated:
    key = await ShopRepository(call.db).rotate_api_key(call.current_shop.shop_id, call.now())
    if key is None:
        raise ApiError(404, "not_found", "shop not found")
    return ApiKeyRotated(api_key=key)
