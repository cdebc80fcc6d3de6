"""What the bot answers for each customer action, shared by keywords and postbacks.

Each function takes the event context, calls the domain (repositories), and
returns the messages to send; the handler sends them with `bot.replies.respond`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.flex.history import OrderCard, OrderLine, history_message
from bot.flex.points import PointsView, points_message
from bot.flex.welcome import welcome_message
from bot.router import EventContext
from core.flex import text_message
from storage.orders import OrderRepository
from storage.points import PointsRepository, summary_from_customer
from storage.products import ProductRepository

HISTORY_WINDOW = timedelta(days=92)  # "the last 3 months"
HISTORY_LIMIT = 12
OPTED_OUT_TEXT = "お知らせの配信を停止しました。再開するときは「配信再開」と送ってください。"
OPTED_IN_TEXT = "お知らせの配信を再開しました。停止するときは「配信停止」と送ってください。"


def link_url(ctx: EventContext) -> str:
    """The shop's link start page (owned by the linking package)."""
    return f"{ctx.settings.public_base}/l/{ctx.shop.shop_id}"


async def welcome(ctx: EventContext) -> list[dict[str, Any]]:
    messaging = await ctx.messaging()
    return [welcome_message(messaging.welcome_text, messaging.welcome_link_button_text, link_url(ctx))]


async def link_offer(ctx: EventContext) -> list[dict[str, Any]]:
    messaging = await ctx.messaging()
    return [welcome_message("下のボタンから、お使いのブラウザとLINEアカウントを連携できます。",
                            messaging.welcome_link_button_text, link_url(ctx))]


async def points(ctx: EventContext, user_id: str) -> list[dict[str, Any]]:
    customer = ctx.batch.customer(user_id)
    summary = summary_from_customer(customer, ctx.now)
    if summary is None:  # the kept soonest expiry is past: only the ledger knows the next one
        summary = await PointsRepository(ctx.db).summary(ctx.shop.shop_id, user_id, ctx.now)
    messaging = await ctx.messaging()
    view = PointsView(
        balance=summary.balance,
        expiring_amount=summary.soonest_expiring_amount,
        expiring_at=summary.soonest_expiry_at,
        rank=(customer or {}).get("rank"),
        shop_name=ctx.shop.name,
        timezone=ctx.shop.timezone,
        shop_url=messaging.shop_url,
    )
    return [points_message(view)]


async def history(ctx: EventContext, user_id: str) -> list[dict[str, Any]]:
    orders = await OrderRepository(ctx.db).recent_for_customer(
        ctx.shop.shop_id, user_id, ctx.now - HISTORY_WINDOW, limit=HISTORY_LIMIT
    )
    product_ids = {item["product_id"] for order in orders for item in order.get("items", [])}
    products = await ProductRepository(ctx.db).get_many(ctx.shop.shop_id, product_ids) if product_ids else {}
    cards = [
        OrderCard(
            order_id=order["order_id"],
            ordered_at=order["ordered_at"],
            lines=[
                OrderLine(title=(products.get(item["product_id"]) or {}).get("title") or item["product_id"],
                          quantity=int(item.get("quantity", 1)))
                for item in order.get("items", [])
            ],
            total=int(order.get("total", 0)),
            status=str(order.get("status", "")),
        )
        for order in orders
    ]
    return [history_message(cards, ctx.shop.timezone)]


def set_opted_out(ctx: EventContext, user_id: str, opted_out: bool) -> list[dict[str, Any]]:
    ctx.batch.set_opted_out(user_id, opted_out)  # stored before the confirmation goes out
    return [text_message(OPTED_OUT_TEXT if opted_out else OPTED_IN_TEXT)]
