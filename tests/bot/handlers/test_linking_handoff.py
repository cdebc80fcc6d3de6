"""Link codes in chat and LINE's accountLink event are handed to the linking package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.clock import FixedClock
from linesim.client import SimClient
from linking.account_link import issue_nonce
from linking.chat_code import issue_chat_code
from storage.database import Database
from tests.bot.conftest import USER
from tests.conftest import ShopHandle

Play = Callable[..., Awaitable[dict[str, Any]]]


async def test_a_chat_code_links_the_browser_and_is_confirmed(
    play: Play, sim: SimClient, db: Database, shop: ShopHandle, clock: FixedClock
) -> None:
    code = await issue_chat_code(db, shop.shop_id, "browser-0001", clock.now())
    await play({"type": "text", "user_id": USER, "text": code})
    assert "連携が完了しました" in (await sim.messages(to=USER))[-1]["messages"][0]["text"]
    browser = await db["browsers"].find_one({"_id": f"{shop.shop_id}:browser-0001"})
    assert browser is not None and browser["line_user_id"] == USER
    # The same user sending it again (or their event re-run after a crash) is told it is linked.
    await play({"type": "text", "user_id": USER, "text": code})
    assert "すでに連携済み" in (await sim.messages(to=USER))[-1]["messages"][0]["text"]
    other = "U" + "f" * 32
    await play({"type": "text", "user_id": other, "text": code})  # anyone else: a used code is explained
    assert "すでに使用されています" in (await sim.messages(to=other))[-1]["messages"][0]["text"]


async def test_account_link_event_completes_the_link(
    play: Play, sim: SimClient, db: Database, shop: ShopHandle, clock: FixedClock
) -> None:
    issued = await issue_nonce(db, shop.shop_id, "member-42", None, None, "https://access.line.me", clock.now())
    await play({"type": "accountLink", "user_id": USER, "nonce": issued.nonce, "result": "ok"})
    assert (await sim.messages(to=USER))[-1]["messages"][0]["text"] == "ショップの会員アカウントとの連携が完了しました。"
    customer = await db["customers"].find_one({"_id": f"{shop.shop_id}:{USER}"})
    assert customer is not None and customer["shop_customer_id"] == "member-42"
