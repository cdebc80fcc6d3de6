"""A chat code or account-link nonce used up just before the process died still links on the re-run
(the webhook event is recovered and handled again), instead of answering "already used"; anyone
else still gets "already used"."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.typedefs import CLOCK, DATABASE
from linking import account_link, chat_code
from linking.account_link import complete_account_link, issue_nonce
from linking.chat_code import issue_chat_code, redeem_chat_code
from linking.links import LinkStatus
from tests.conftest import START, ShopHandle
from tests.linking.conftest import browser_id, line_user_id


class Died(Exception):
    """The process 'dies' right after the token was used up, before the link is written."""


def die_once(monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
    real = module.link_browser
    calls = {"n": 0}

    async def link_browser(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Died
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, "link_browser", link_browser)


async def owner(client: TestClient[Any, Any], shop_id: str, bid: str) -> str | None:
    doc = await client.app[DATABASE]["browsers"].find_one({"shop_id": shop_id, "browser_id": bid})
    return doc.get("line_user_id") if doc else None


async def test_a_chat_code_used_up_before_the_link_was_written_links_on_the_rerun(
    client: TestClient[Any, Any], shop: ShopHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, bid, user = client.app[DATABASE], browser_id(), line_user_id()
    code = await issue_chat_code(db, shop.shop_id, bid, START)
    die_once(monkeypatch, chat_code)
    with pytest.raises(Died):
        await redeem_chat_code(db, shop.shop_id, code, user, START)
    assert await owner(client, shop.shop_id, bid) is None
    rerun = await redeem_chat_code(db, shop.shop_id, code, user, START)  # recovery handles the event again
    assert rerun is not None and rerun.status is LinkStatus.LINKED
    assert await owner(client, shop.shop_id, bid) == user
    stranger = await redeem_chat_code(db, shop.shop_id, code, line_user_id(), START)
    assert stranger is not None and stranger.status is LinkStatus.USED
    assert await owner(client, shop.shop_id, bid) == user


async def test_an_account_link_nonce_used_up_before_the_link_was_written_links_on_the_rerun(
    client: TestClient[Any, Any], shop: ShopHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, bid, user = client.app[DATABASE], browser_id(), line_user_id()
    issued = await issue_nonce(db, shop.shop_id, "member-1", bid, None, "https://access.line.me",
                               client.app[CLOCK].now())
    die_once(monkeypatch, account_link)
    with pytest.raises(Died):
        await complete_account_link(db, shop.shop_id, user, issued.nonce, "ok", START)
    rerun = await complete_account_link(db, shop.shop_id, user, issued.nonce, "ok", START)
    assert rerun.status is LinkStatus.LINKED
    assert await owner(client, shop.shop_id, bid) == user
    other = await complete_account_link(db, shop.shop_id, line_user_id(), issued.nonce, "ok", START)
    assert other.status is LinkStatus.USED
