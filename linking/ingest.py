"""Storing browser events (acknowledged in groups) and applying them (processed after, exactly once).

The tracking endpoint hands each validated request here through a group
commit (concurrent requests go together). `acknowledge` costs a fixed number
of round trips whatever the group's size, and is all a 204 waits for:

1. budgets - each browser's per-minute budget in memory, then the shops' (shared
   by every process, taken in slices: a write per slice, not per group): `linking.budgets`.
   A request over either budget is refused (429) and stores nothing;
2. one insert, durable (`ACKNOWLEDGED`), of the group's events that are new
   (unique by the client's event ID, so a retried beacon counts once):
   `storage.tracking_batches`.

`process` then applies the stored events (the processor behind the endpoint,
`linking.event_processing`, takes them in turns behind the acknowledgements):
the browsers' own documents for browsers first seen this minute, then in one
transaction the product view counters (`$inc`), the `product_viewed` intents
for linked browsers, the `browser_events` intent of each shop (its new events
the flows hear) and the batches marked done - all or nothing, so a crash or a
second processor never counts a view twice. After the commit the owners of
the viewed browsers are read again (a link that raced with us is caught up)
and the intents are delivered (what a crash leaves behind, the worker's
outbox drain delivers).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from linking.budgets import BrowserBudgets, ShopBudgets
from storage.browsers import BrowserRepository, BrowserViews, Seen, ViewCount
from storage.database import Database
from storage.durability import UNSYNCED
from storage.signals import Intent, deliver_all
from storage.tracking_batches import INTERNAL_FIELDS, TrackingBatchRepository, event_item
from storage.types import Document

log = logging.getLogger("linecrm.linking")

EVENTS_PER_BROWSER_PER_MINUTE = 120
PROCESSING_FIELDS = (*INTERNAL_FIELDS, "opens")  # an item's bookkeeping, not part of the event the flows hear


@dataclass(frozen=True)
class Submission:
    """One request's validated events (as dicts: `linking.tracking.BrowserEvent` dumped), for one shop."""

    shop_id: str
    events: list[dict[str, Any]]
    received_at: datetime
    shop_limit: int  # the shop's events per minute


@dataclass(frozen=True)
class Verdict:
    refused: str | None = None  # "shop" or "browser": over that budget, nothing stored
    stored: int = 0  # events new now


@dataclass(frozen=True)
class Acknowledged:
    """A group's verdicts, and its new events as stored (with their batch and claim) for `process`."""

    verdicts: list[Verdict]
    items: list[Document] = field(default_factory=list)


def first_seen_fields(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What a new browser remembers of its landing (first UTM and referrer)."""
    first = events[0]
    return {"first_utm": first.get("utm"), "first_referrer": first.get("referrer")}


def _by_browser(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[event["browser_id"]].append(event)
    return grouped


def _views(docs: list[Document]) -> dict[tuple[str, str], list[ViewCount]]:
    """(shop, browser) -> product page views among these (new) events, counted per product."""
    counts: dict[tuple[str, str, str], list[datetime]] = defaultdict(list)
    for doc in docs:
        if doc.get("type") == "page_view" and doc.get("product_id"):
            counts[(doc["shop_id"], doc["browser_id"], doc["product_id"])].append(doc["received_at"])
    views: dict[tuple[str, str], list[ViewCount]] = defaultdict(list)
    for (shop_id, browser_id, product_id), times in counts.items():
        views[(shop_id, browser_id)].append(ViewCount(product_id, len(times), min(times), max(times)))
    return views


@dataclass(frozen=True)
class Budgets:
    """The budgets a process takes browser events from (`linking.budgets`)."""

    browsers: BrowserBudgets
    shops: ShopBudgets = field(default_factory=ShopBudgets)


async def _budgets(db: Database, submissions: list[Submission], budgets: Budgets,
                   now: datetime) -> tuple[list[str | None], set[tuple[int, str]]]:
    """Per submission: None when within every budget, else which refused it; and the (submission, browser)
    pairs whose take opened the browser's minute here."""
    refused: list[str | None] = [None] * len(submissions)
    taken: list[list[tuple[str, int]]] = [[] for _ in submissions]
    opens: set[tuple[int, str]] = set()
    for index, submission in enumerate(submissions):
        for browser_id, own in _by_browser(submission.events).items():
            take = budgets.browsers.take(submission.shop_id, browser_id, len(own), now)
            if not take.granted:
                refused[index] = "browser"
                break
            taken[index].append((browser_id, len(own)))
            if take.opens:
                opens.add((index, browser_id))

    def give_back(index: int) -> None:
        for browser_id, events in taken[index]:
            budgets.browsers.give_back(submissions[index].shop_id, browser_id, events, now)
        taken[index] = []

    for index in range(len(submissions)):
        if refused[index] is not None:
            give_back(index)
    per_shop: dict[str, list[int]] = defaultdict(list)
    for index, submission in enumerate(submissions):
        if refused[index] is None:
            per_shop[submission.shop_id].append(index)
    needs = {shop_id: (sum(len(submissions[i].events) for i in indexes), submissions[indexes[0]].shop_limit)
             for shop_id, indexes in per_shop.items()}
    try:
        granted = await budgets.shops.take(db, needs, now)
    except BaseException:
        for indexes in per_shop.values():
            for index in indexes:
                give_back(index)
        raise
    for shop_id, indexes in per_shop.items():
        if not granted[shop_id]:
            for index in indexes:
                refused[index] = "shop"
                give_back(index)
    return refused, {(index, browser_id) for index, browser_id in opens if refused[index] is None}


def _give_back(submissions: list[Submission], refused: list[str | None], budgets: Budgets, now: datetime) -> None:
    """A group that was granted but not stored (the insert failed): its budgets are not spent."""
    for index, submission in enumerate(submissions):
        if refused[index] is None:
            budgets.shops.give_back(submission.shop_id, len(submission.events), now)
            for browser_id, own in _by_browser(submission.events).items():
                budgets.browsers.give_back(submission.shop_id, browser_id, len(own), now)


async def acknowledge(db: Database, submissions: list[Submission], budgets: Budgets,
                      now: datetime, batches: TrackingBatchRepository | None = None) -> Acknowledged:
    """Store the submissions that are within their budgets, durably and together; a verdict per submission.

    `batches` is the process's repository (its batches share one claim); a new one by default.
    """
    refused, opens = await _budgets(db, submissions, budgets, now)
    items: list[Document] = []
    owner_of: list[int] = []  # submission index of each item
    for index, submission in enumerate(submissions):
        if refused[index] is not None:
            continue
        opening = {browser_id for i, browser_id in opens if i == index}
        for event in submission.events:
            item = event_item(submission.shop_id, event, submission.received_at)
            if event["browser_id"] in opening:  # the browser's first event here this minute: seen now
                opening.discard(event["browser_id"])
                item["opens"] = True
            items.append(item)
            owner_of.append(index)
    if not items:
        return Acknowledged([Verdict(refused=reason) for reason in refused])
    try:
        fresh = await (batches or TrackingBatchRepository(db)).store(items, now)
    except BaseException:
        _give_back(submissions, refused, budgets, now)
        raise
    stored: dict[int, int] = defaultdict(int)
    for is_new, index in zip(fresh, owner_of, strict=True):
        stored[index] += is_new
    return Acknowledged([Verdict(refused=reason, stored=stored[index]) for index, reason in enumerate(refused)],
                        [item for item, is_new in zip(items, fresh, strict=True) if is_new])


async def _owners(db: Database, browsers: set[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    by_shop: dict[str, list[str]] = defaultdict(list)
    for shop_id, browser_id in browsers:
        by_shop[shop_id].append(browser_id)
    found: dict[tuple[str, str], str | None] = {}
    repository = BrowserRepository(db)
    for shop_id, browser_ids in by_shop.items():
        for browser_id, owner in (await repository.line_users(shop_id, browser_ids)).items():
            found[(shop_id, browser_id)] = owner
    return found


async def process(db: Database, items: list[Document], now: datetime) -> None:
    """Apply stored events exactly once: browsers seen, view counters, the flows' intents, batches done.

    Raises `storage.tracking_batches.ClaimLost` (nothing applied) when another processor took a batch over.
    """
    if not items:
        return
    browsers = BrowserRepository(db)
    # Idempotent (`$max`, `$setOnInsert`): outside the transaction, and before the owners are read.
    await browsers.record_seen([Seen(item["shop_id"], item["browser_id"], first_seen_fields([item]))
                                for item in items if item.get("opens")], now)
    # Every browser's owner as read before the write: view rows start attributed to it, and the flows hear
    # a page view of a linked browser (`browser_events`); a link racing with us is caught up after the commit.
    before = await _owners(db, {(item["shop_id"], item["browser_id"]) for item in items})
    views = _views(items)
    intents: list[Intent] = []

    async def write(session: AsyncClientSession) -> None:
        await browsers.add_views_many(
            [BrowserViews(shop_id, browser_id, counts, before.get((shop_id, browser_id)))
             for (shop_id, browser_id), counts in views.items()], session)
        calls = [(shop_id, before[(shop_id, browser_id)], view.product_id, now)
                 for (shop_id, browser_id), counts in views.items() if before.get((shop_id, browser_id))
                 for view in counts]
        intents[:] = await db.signals.product_viewed.intend_many(db, calls, now, session=session)
        intents.extend(await db.signals.browser_events.intend_many(db, _flow_events(items, before, now), now,
                                                                   session=session))
        await TrackingBatchRepository(db).finish(items, now, session)

    # Not synced on its own: lost with an unsynced end of the log, the batches are still stored and are
    # processed again; the listeners' own writes sync the log up to and including it.
    async with db.client.start_session() as session:
        await session.with_transaction(write, write_concern=UNSYNCED)
    await _after_commit(db, views, before, intents, now)


def _flow_events(new: list[Document], owners: dict[tuple[str, str], str | None],
                 now: datetime) -> list[tuple[str, list[Document], datetime]]:
    """`browser_events` calls, one per shop: its new carts, checkouts and purchases of any browser (a cart may
    belong to a customer linked later) and page views of linked browsers, each with the browser's owner."""
    by_shop: dict[str, list[Document]] = defaultdict(list)
    for doc in new:
        owner = owners.get((doc["shop_id"], doc["browser_id"]))
        if doc.get("type") != "page_view" or owner:
            event = {name: value for name, value in doc.items() if name not in PROCESSING_FIELDS}
            by_shop[doc["shop_id"]].append({**event, "line_user_id": owner})
    return [(shop_id, events, now) for shop_id, events in by_shop.items()]


async def _after_commit(db: Database, views: dict[tuple[str, str], list[ViewCount]],
                        before: dict[tuple[str, str], str | None], intents: list[Intent], now: datetime) -> None:
    """Catch up with links that raced with the write, then tell the listeners."""
    late: list[tuple[str, str, str, datetime]] = []
    if views:
        # Read the owners after writing the views: a link racing with us either saw our view rows or
        # we see its owner now, so no view is left unattributed.
        after = await _owners(db, set(views))
        browsers = BrowserRepository(db)
        for (shop_id, browser_id), counts in views.items():
            owner = after.get((shop_id, browser_id))
            if owner and owner != before.get((shop_id, browser_id)):
                await browsers.claim_views(shop_id, browser_id, owner)
                late += [(shop_id, owner, view.product_id, now) for view in counts]
    if late:
        intents = intents + await db.signals.product_viewed.intend_many(db, late, now)
    await deliver_all(intents)
