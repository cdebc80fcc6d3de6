"""Events stored a batch of requests per document: deduplicated across batches, closed by the last handler,
retried event by event, and events an earlier version stored one per document still handled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.handling import Ownership
from bot.typedefs import DATABASE
from core.clock import FixedClock
from linesim import webhook as events
from linesim.client import SimClient
from storage.database import Database
from storage.webhook_events import LEASE, HandlingResult, WebhookEventRepository, event_documents
from tests.bot.conftest import USER, recover, settle
from tests.conftest import ShopHandle


def _result(batch: str, index: int, error: str | None = None) -> HandlingResult:
    return HandlingResult(f"k{batch}{index}", "c", "error" if error else "replied", error, batch=batch)


@pytest.mark.parametrize(
    ("held", "rounds", "closing"),
    [
        # one stored batch handled in one go: closed, done
        ({"A": 2}, [[("A", 0, None), ("A", 1, None)]], [{"A": True}]),
        # split over two handling batches: only the second closes it
        ({"A": 3}, [[("A", 0, None)], [("A", 1, None), ("A", 2, None)]], [{}, {"A": True}]),
        # a failure anywhere: closed as incomplete (back-off), by whichever call is last
        ({"A": 2}, [[("A", 0, "boom")], [("A", 1, None)]], [{}, {"A": False}]),
        # two stored batches in one handling batch, one of them still partly held
        ({"A": 1, "B": 2}, [[("A", 0, None), ("B", 0, None)], [("B", 1, None)]], [{"A": True}, {"B": True}]),
    ],
)
def test_the_last_handling_batch_closes_a_stored_batch(
    held: dict[str, int], rounds: list[list[tuple[str, int, str | None]]], closing: list[dict[str, bool]]
) -> None:
    ownership = Ownership()
    ownership.take([{"batch": batch} for batch, n in held.items() for _ in range(n)])
    for results, expected in zip(rounds, closing, strict=True):
        assert ownership.settle([_result(*r) for r in results]) == expected
    assert len(ownership) == 0  # nothing left held: no memory kept per batch


def test_events_left_to_recovery_keep_their_stored_batch_open() -> None:
    ownership = Ownership()
    ownership.take([{"batch": "A"}, {"batch": "A"}])
    ownership.put_back([{"batch": "A"}])  # waited too long: recovery handles it
    assert ownership.settle([_result("A", 1)]) == {"A": False}
    assert len(ownership) == 0


async def test_a_duplicate_is_caught_across_stored_batches_and_the_new_events_kept(
    db: Database, shop: ShopHandle, clock: FixedClock
) -> None:
    repository = WebhookEventRepository(db)
    first, second, third = (events.text_message_event(USER, text) for text in ("a", "b", "c"))
    assert [doc["webhook_event_id"] for doc in (await repository.store(shop.shop_id, [first, second],
                                                                        clock.now())).new] == \
        [first["webhookEventId"], second["webhookEventId"]]
    # The same event again without LINE's redelivery flag (a request we answered too late), with a new one.
    again = await repository.store(shop.shop_id, [third, second, third], clock.now())
    assert [doc["webhook_event_id"] for doc in again.new] == [third["webhookEventId"]] and again.duplicates == 2
    assert await repository.count(shop.shop_id) == 3
    stored = [await repository.get(shop.shop_id, e["webhookEventId"]) for e in (first, second, third)]
    assert all(doc is not None and doc["state"] == "handling" for doc in stored)


async def test_a_failed_event_is_retried_alone_and_its_neighbours_are_not_repeated(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, clock: FixedClock, bot_url: str
) -> None:
    """Two events in one request, one stored batch: the one LINE refused is retried, the other never again."""
    other = "U" + "b" * 32
    await sim.faults("reply", status=500, count=1)
    answer = await sim.webhook(bot_url, shop.channel_secret, events=[
        {"type": "text", "user_id": USER, "text": "配信停止"}, {"type": "text", "user_id": other, "text": "配信停止"}])
    assert answer["status"] == 200
    app = client.app
    await settle(app)
    repository = WebhookEventRepository(app[DATABASE])
    docs = [await repository.get(shop.shop_id, e["webhookEventId"]) for e in answer["events"]]
    assert sorted(str(doc and doc["state"]) for doc in docs) == ["done", "handling"]
    assert len(await sim.messages()) == 1
    clock.advance(timedelta(minutes=1))  # the back-off of the first attempt
    assert await recover(app) == 1
    docs = [await repository.get(shop.shop_id, e["webhookEventId"]) for e in answer["events"]]
    assert [doc and doc["state"] for doc in docs] == ["done", "done"]
    assert len(await sim.messages(to=USER)) == 1 and len(await sim.messages(to=other)) == 1  # one answer each


async def test_events_an_earlier_version_stored_one_per_document_are_handled(
    client: TestClient[Any, Any], shop: ShopHandle, sim: SimClient, clock: FixedClock
) -> None:
    app = client.app
    db: Database = app[DATABASE]
    old = event_documents(shop.shop_id, [events.text_message_event(USER, "配信停止")], clock.now())[0]
    await db["webhook_events"].insert_one({**old, "state": "handling", "claim": "gone", "attempts": 1,
                                           "lease_until": clock.now() + LEASE})
    assert await recover(app) == 0  # moved, leased
    assert await db["webhook_events"].count_documents({}) == 0
    doc = await WebhookEventRepository(db).get(shop.shop_id, old["webhook_event_id"])
    assert doc is not None and doc["state"] == "handling"
    clock.advance(LEASE)
    assert await recover(app) == 1
    doc = await WebhookEventRepository(db).get(shop.shop_id, old["webhook_event_id"])
    assert doc is not None and doc["state"] == "done" and doc["responded_at"]
    assert [m["kind"] for m in await sim.messages(to=USER)] == ["push"]


async def test_events_too_large_for_one_document_together_are_stored_apart(
    db: Database, shop: ShopHandle, clock: FixedClock
) -> None:
    repository = WebhookEventRepository(db)
    bulky = [events.text_message_event(USER, "あ" * 20_000) for _ in range(300)]  # ~18 MB as one document
    stored = await repository.store(shop.shop_id, bulky, clock.now())
    assert len(stored.new) == 300 and stored.duplicates == 0
    assert len({doc["batch"] for doc in stored.new}) == 300
    assert await repository.count(shop.shop_id) == 300
