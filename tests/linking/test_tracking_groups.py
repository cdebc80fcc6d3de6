"""Browser events written in groups: concurrent requests share one write and still get their own answers;
the shop's budget and the browsers' hold; stored events are applied (view counters, intents) exactly once,
by their processor or by recovery; server-side senders need the shop's opt-in and its API key."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pymongo import AsyncMongoClient

from bot.typedefs import DATABASE
from core.clock import FixedClock
from linking.budgets import BrowserBudgets
from linking.event_processing import EventProcessor
from linking.ingest import Budgets, Submission, acknowledge, process
from linking.tracking import BROWSER_BUDGETS, EVENT_PROCESSOR
from storage.tracking_batches import LEASE, ClaimLost, TrackingBatchRepository
from tests.conftest import ShopHandle
from tests.linking.conftest import browser_id, event, post_events, stored_events


def db(client: TestClient[Any, Any]) -> Any:
    return client.app[DATABASE]


async def _views(client: TestClient[Any, Any], bid: str) -> dict[str, int]:
    return {v["product_id"]: v["count"] async for v in db(client)["product_views"].find({"browser_id": bid})}


async def _tracking(client: TestClient[Any, Any], shop: ShopHandle, **fields: Any) -> None:
    response = await client.put(f"/admin/api/v1/shops/{shop.shop_id}/settings/tracking",
                                json={"allowed_origins": ["https://shop.example"], **fields}, headers=shop.auth)
    assert response.status == 200, await response.text()
    from linking.tracking import CONFIGS

    client.app[CONFIGS].clear()  # this process's copy of the settings, refreshed at once for the test


async def test_concurrent_requests_each_get_their_own_answer(client: TestClient[Any, Any], shop: ShopHandle) -> None:
    browsers = [browser_id() for _ in range(30)]
    bodies = [[event(bid, product_id="p1"), event(bid, product_id="p2")] for bid in browsers]
    bodies.append([event(browsers[0], type="nope")])  # junk in the middle of the crowd: refused alone
    answers = await asyncio.gather(*(post_events(client, shop.shop_id, body) for body in bodies))
    assert [answer.status for answer in answers] == [204] * 30 + [422]
    assert len(await stored_events(client, shop.shop_id)) == 60
    for bid in browsers:
        assert await _views(client, bid) == {"p1": 1, "p2": 1}
    # The same events again, concurrently with each other: stored and counted once.
    again = await asyncio.gather(*(post_events(client, shop.shop_id, body) for body in bodies[:30] * 2))
    assert {answer.status for answer in again} == {204}
    assert len(await stored_events(client, shop.shop_id)) == 60
    assert await _views(client, browsers[3]) == {"p1": 1, "p2": 1}


async def test_the_shops_budget_holds_across_browsers(
    client: TestClient[Any, Any], shop: ShopHandle, clock: FixedClock
) -> None:
    await _tracking(client, shop, events_per_minute=100)
    accepted = 0
    for _ in range(12):  # 12 fresh browsers x 10 events: the shop's 100 a minute run out, whatever the browser
        response = await post_events(client, shop.shop_id, [event(browser_id()) for _ in range(10)])
        if response.status == 204:
            accepted += 10
        else:
            assert response.status == 429 and response.headers["Retry-After"] == "60"
            assert (await response.json())["error"]["code"] == "rate_limited"
    assert accepted == 100
    assert len(await stored_events(client, shop.shop_id)) == 100
    clock.advance(timedelta(minutes=1))
    assert (await post_events(client, shop.shop_id, event(browser_id()))).status == 204


async def test_a_refused_request_changes_nothing(
    client: TestClient[Any, Any], shop: ShopHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client.app[BROWSER_BUDGETS], "limit", 3)
    bid = browser_id()
    assert (await post_events(client, shop.shop_id, [event(bid), event(bid), event(bid), event(bid)])).status == 429
    assert await db(client)["browsers"].count_documents({"browser_id": bid}) == 0
    assert len(await stored_events(client, shop.shop_id, browser_id=bid)) == 0


@pytest.fixture
async def fail_points(mongo_uri: str) -> AsyncIterator[AsyncMongoClient[Any]]:
    admin: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri)
    yield admin
    await admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    await admin.close()


async def _batch_state(client: TestClient[Any, Any], shop: ShopHandle, bid: str) -> set[str]:
    return {stored["state"] for stored in await stored_events(client, shop.shop_id, browser_id=bid)}


async def test_a_failed_counter_write_leaves_the_events_to_recovery_which_counts_them_once(
    client: TestClient[Any, Any], shop: ShopHandle, clock: FixedClock, fail_points: AsyncMongoClient[Any]
) -> None:
    """The failure the old endpoint had: events stored, then the counters' write fails (or the process dies);
    the retried beacon is a duplicate and the views are lost for good. Now the events are acknowledged once
    stored, and their counters, intents and the batch's "done" are one transaction that recovery retries."""
    bid = browser_id()
    body = [event(bid, product_id="p1"), event(bid, product_id="p2")]
    # The writes: the shop's budget (update), the events (insert), then processing: the browser's own document
    # (update) and in one transaction the counters (update), the intents and the batch marked done: fail the
    # counters' update.
    await fail_points.admin.command({"configureFailPoint": "failCommand", "mode": {"skip": 2, "times": 1},
                                     "data": {"failCommands": ["update"], "errorCode": 8}})
    acknowledged = await post_events(client, shop.shop_id, body)
    assert acknowledged.status == 204  # stored: the answer does not wait for the counters
    assert len(await stored_events(client, shop.shop_id, browser_id=bid)) == 2
    assert await db(client)["browsers"].count_documents({"browser_id": bid}) == 1
    assert await _views(client, bid) == {} and await _batch_state(client, shop, bid) == {"stored"}
    retried = await post_events(client, shop.shop_id, body)  # a retried beacon: a duplicate, nothing new
    assert retried.status == 204 and len(await stored_events(client, shop.shop_id, browser_id=bid)) == 2

    processor = client.app[EVENT_PROCESSOR]
    assert await processor.recover() == 0  # the lease has not run out: its owner may still be at it
    clock.advance(LEASE + timedelta(seconds=1))
    assert await processor.recover() == 2
    assert await _views(client, bid) == {"p1": 1, "p2": 1} and await _batch_state(client, shop, bid) == {"done"}
    clock.advance(LEASE + timedelta(seconds=1))
    assert await processor.recover() == 0
    assert await _views(client, bid) == {"p1": 1, "p2": 1}


async def test_a_connection_lost_mid_write_is_retried_and_counted_once(
    client: TestClient[Any, Any], shop: ShopHandle, fail_points: AsyncMongoClient[Any]
) -> None:
    bid = browser_id()
    await fail_points.admin.command({"configureFailPoint": "failCommand", "mode": {"skip": 2, "times": 1},
                                     "data": {"failCommands": ["update"], "closeConnection": True}})
    # The counters' write dies with its connection inside the processing transaction: the driver runs the
    # transaction again, which counts the views once and marks the batch done.
    response = await post_events(client, shop.shop_id, [event(bid, product_id="p1")])
    assert response.status == 204
    assert len(await stored_events(client, shop.shop_id, browser_id=bid)) == 1
    assert await _views(client, bid) == {"p1": 1} and await _batch_state(client, shop, bid) == {"done"}


async def test_two_processors_of_one_batch_apply_it_once(client: TestClient[Any, Any], shop: ShopHandle,
                                                         clock: FixedClock) -> None:
    """A processor that was slow past its lease races the recovery that took its batch over: one applies."""
    bid = browser_id()
    submission = Submission(shop.shop_id, [event(bid, product_id="p1"), event(bid, product_id="p1")], clock.now(),
                            10_000)
    acknowledged = await acknowledge(db(client), [submission], Budgets(BrowserBudgets(120)), clock.now())
    assert [verdict.stored for verdict in acknowledged.verdicts] == [2]
    clock.advance(LEASE + timedelta(seconds=1))
    repository = TrackingBatchRepository(db(client))
    taken_over = await repository.claim_expired(clock.now())
    assert {item["_id"] for item in taken_over} == {item["_id"] for item in acknowledged.items}
    with pytest.raises(ClaimLost):
        await process(db(client), acknowledged.items, clock.now())  # the first owner, too late: nothing applied
    assert await _views(client, bid) == {}
    await process(db(client), taken_over, clock.now())
    assert await _views(client, bid) == {"p1": 2}
    with pytest.raises(ClaimLost):
        await process(db(client), taken_over, clock.now())  # run twice: still counted once
    assert await _views(client, bid) == {"p1": 2}


async def test_a_processor_stopping_while_it_lingers_applies_what_it_holds_and_ends(
    client: TestClient[Any, Any], shop: ShopHandle, clock: FixedClock
) -> None:
    """Stopping right after a hand-over (the worker is lingering for more): applied, and the stop returns."""
    for _ in range(20):
        bid = browser_id()
        submission = Submission(shop.shop_id, [event(bid, product_id="p4")], clock.now(), 10_000)
        acknowledged = await acknowledge(db(client), [submission], Budgets(BrowserBudgets(120)), clock.now())
        processor = EventProcessor(db(client), clock.now, linger=0.05)
        processor.start()
        processor.submit(acknowledged.items)
        await asyncio.sleep(random.uniform(0, 0.06))
        await asyncio.wait_for(processor.stop(grace=5), 10)
        assert await _views(client, bid) == {"p4": 1}


async def test_events_left_by_a_stopped_process_are_recovered(client: TestClient[Any, Any], shop: ShopHandle,
                                                              clock: FixedClock) -> None:
    """Stored and acknowledged, never processed (the process stopped): released, then recovered at once."""
    bid = browser_id()
    submission = Submission(shop.shop_id, [event(bid, product_id="p3")], clock.now(), 10_000)
    acknowledged = await acknowledge(db(client), [submission], Budgets(BrowserBudgets(120)), clock.now())
    await TrackingBatchRepository(db(client)).release(acknowledged.items, clock.now())
    assert await client.app[EVENT_PROCESSOR].recover() == 1
    assert await _views(client, bid) == {"p3": 1} and await _batch_state(client, shop, bid) == {"done"}
    browser = await db(client)["browsers"].find_one({"browser_id": bid})
    assert browser is not None and browser["last_seen_at"] == clock.now()


async def test_server_side_events_need_the_opt_in_and_the_api_key(
    client: TestClient[Any, Any], shop: ShopHandle, make_shop: Any
) -> None:
    bid = browser_id()
    no_origin = await post_events(client, shop.shop_id, event(bid), origin=None)
    assert no_origin.status == 403 and (await no_origin.json())["error"]["code"] == "origin_required"
    keyed = {"Authorization": shop.auth["Authorization"], "Content-Type": "application/json"}
    url = f"/t/{shop.shop_id}/events"
    refused = await client.post(url, json=event(bid), headers=keyed)
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "server_side_events_disabled"

    await _tracking(client, shop, server_side_events=True)
    accepted = await client.post(url, json=[event(bid, product_id="p1"), event(bid, type="purchase")], headers=keyed)
    assert accepted.status == 204
    other = await make_shop()
    wrong = await client.post(url, json=event(bid), headers={"Authorization": other.auth["Authorization"]})
    assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "invalid_api_key"
    still = await post_events(client, shop.shop_id, event(bid), origin=None)  # no key, no Origin: still refused
    assert still.status == 403
    assert len(await stored_events(client, shop.shop_id, browser_id=bid)) == 2
    assert await _views(client, bid) == {"p1": 1}

    rotated = await client.post(f"/admin/api/v1/shops/{shop.shop_id}/api-key", headers=shop.auth)
    assert rotated.status == 200
    old = await client.post(url, json=event(bid), headers=keyed)  # an old key stops working at once, as on the API
    assert old.status == 401
