"""Chat codes: the page issues one, the bot redeems it once, for its shop, before it expires."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient

from bot.typedefs import DATABASE
from linking.chat_code import issue_chat_code, parse_code, redeem_chat_code
from linking.links import LinkStatus
from tests.conftest import START, ShopHandle
from tests.linking.conftest import browser_id, line_user_id, link_token


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("連携コード: AB12-CD34", "AB12-CD34"),
        ("連携コード：ab12cd34", "AB12-CD34"),
        ("ＡＢ１２－ＣＤ３４", "AB12-CD34"),  # full-width, as Japanese keyboards type it
        ("  ab12-cd34 ", "AB12-CD34"),
        ("AB1O-CD3I", "AB10-CD31"),  # O and I are read as 0 and 1
        ("AB12CD34", None),  # bare without the hyphen: could be anything
        ("ポイント", None),
        ("連携コード: AB12-CD3U", None),  # U is not in the alphabet
        ("please link AB12-CD34", None),
    ],
)
def test_parse_code(text: str, code: str | None) -> None:
    assert parse_code(text) == code


async def test_the_page_issues_a_code_that_opens_line_prefilled(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    bid = browser_id()
    token = await link_token(client, shop.shop_id, bid)
    response = await client.get(f"/l/{shop.shop_id}/code", params={"lt": token, "return": "https://shop.example/"})
    page = await response.text()
    assert response.status == 200, page
    code_match = re.search(r'id="chat-code">([0-9A-Z]{4}-[0-9A-Z]{4})<', page)
    link_match = re.search(r'id="open-line" href="([^"]+)"', page)
    assert code_match is not None and link_match is not None, page
    code, link = code_match.group(1), link_match.group(1)
    assert link.startswith("https://line.me/R/oaMessage/%40")
    assert unquote(link.split("/?", 1)[1]) == f"連携コード: {code}"
    user = line_user_id()
    outcome = await redeem_chat_code(client.app[DATABASE], shop.shop_id, f"連携コード: {code}", user, START)
    assert outcome is not None and outcome.status is LinkStatus.LINKED and outcome.browser_id == bid
    doc = await client.app[DATABASE]["browsers"].find_one({"_id": f"{shop.shop_id}:{bid}"})
    assert doc["line_user_id"] == user and doc["link_method"] == "chat_code"
    stored = await client.app[DATABASE]["link_tokens"].find_one({"kind": "chat_code"})
    assert code not in str(stored)  # only a hash is kept


async def test_a_code_works_once_for_its_shop_before_it_expires(
    client: TestClient[Any, Any], shop: ShopHandle, make_shop: Any
) -> None:
    db = client.app[DATABASE]
    other = await make_shop()
    code = await issue_chat_code(db, shop.shop_id, browser_id(), START)
    crossed = await redeem_chat_code(db, other.shop_id, code, line_user_id(), START)
    assert crossed is not None and crossed.status is LinkStatus.WRONG_SHOP and not crossed.ok
    first = await redeem_chat_code(db, shop.shop_id, code, line_user_id(), START)
    assert first is not None and first.ok
    again = await redeem_chat_code(db, shop.shop_id, code, line_user_id(), START)
    assert again is not None and again.status is LinkStatus.USED and "すでに使用" in again.message
    late = await issue_chat_code(db, shop.shop_id, browser_id(), START)
    expired = await redeem_chat_code(db, shop.shop_id, late, line_user_id(), START + timedelta(minutes=11))
    assert expired is not None and expired.status is LinkStatus.EXPIRED
    unknown = await redeem_chat_code(db, shop.shop_id, "連携コード: 0000-0000", line_user_id(), START)
    assert unknown is not None and unknown.status is LinkStatus.UNKNOWN
    assert await redeem_chat_code(db, shop.shop_id, "こんにちは", line_user_id(), START) is None


async def test_concurrent_redemptions_link_once(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    import asyncio

    db = client.app[DATABASE]
    code = await issue_chat_code(db, shop.shop_id, browser_id(), START)
    outcomes = await asyncio.gather(*(redeem_chat_code(db, shop.shop_id, code, line_user_id(), START) for _ in range(5)))
    assert sum(1 for outcome in outcomes if outcome is not None and outcome.ok) == 1
