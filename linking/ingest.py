"""Storing browser events: many requests' events in one group write, all-or-nothing per group.

The tracking endpoint hands each validated request here (through a group
commit: concurrent requests go together), and a group costs a fixed number of
round trips whatever its size:

1. budgets - the shops' per-minute budgets, then the browsers' (one bulk write
   each, storage.rate_budgets). A request over either budget is refused (429)
   and stores nothing. A browser's own document is written (created, or its
   `last_seen_at` moved) by the first request of each minute only;
2. one transaction, committed with the `ACKNOWLEDGED` write concern (and a
   journal barrier after it: storage.durability): the
   events that are new (unique by the client's event ID, so a retried beacon
   counts once), the browsers' product view counters (`$inc` of the new
   views), the `product_viewed` intents for linked browsers and the
   `browser_events` intent of each shop (its new events the flows hear).
   Either all of it is stored or none of it: a crash between the events and
   their counters or intents cannot lose views, and a retry after a failure
   counts them once;
3. after the commit, the owners of the viewed browsers are read again: a link
   that raced with us is caught up (its views claimed, its intents written),
   and the intents are delivered (listeners run, intents deleted; what a
   crash leaves behind, the worker's outbox drain delivers).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.browsers import BrowserRepository, BrowserViews, Seen, ViewCount
from storage.bulk import only_duplicates
from storage.database import Database
from storage.durability import ACKNOWLEDGED, journal_barrier
from storage.events import EventRepository, event_key
from storage.rate_budgets import Take, take_all
from storage.signals import Intent, deliver_all
from storage.types import Document

log = logging.getLogger("linecrm.linking")

EVENTS_PER_BROWSER_PER_MINUTE = 120


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


def first_seen_fields(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What a new browser remembers of its landing (first UTM and referrer)."""
    first = events[0]
    return {"first_utm": first.get("utm"), "first_referrer": first.get("referrer")}


def event_document(shop_id: str, event: dict[str, Any], received_at: datetime) -> Document:
    doc: Document = {"_id": event_key(shop_id, event["event_id"]), "shop_id": shop_id, "received_at": received_at}
    doc.update(event)
    return doc


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


async def _budgets(db: Database, submissions: list[Submission], now: datetime) -> list[str | None]:
    """Per submission: None when within every budget, else which budget refused it."""
    refused: list[str | None] = [None] * len(submissions)
    per_shop: dict[str, list[int]] = defaultdict(list)
    for index, submission in enumerate(submissions):
        per_shop[submission.shop_id].append(index)
    shops = list(per_shop)
    taken = await take_all(db, [Take(f"s|{shop_id}", sum(len(submissions[i].events) for i in per_shop[shop_id]),
                                     submissions[per_shop[shop_id][0]].shop_limit) for shop_id in shops], now)
    for shop_id, result in zip(shops, taken, strict=True):
        if not result.granted:
            for index in per_shop[shop_id]:
                refused[index] = "shop"
    takes: list[Take] = []
    owners: list[tuple[int, Seen]] = []
    for index, submission in enumerate(submissions):
        if refused[index] is None:
            for browser_id, own in _by_browser(submission.events).items():
                takes.append(Take(f"b|{submission.shop_id}|{browser_id}", len(own), EVENTS_PER_BROWSER_PER_MINUTE))
                owners.append((index, Seen(submission.shop_id, browser_id, first_seen_fields(own))))
    seen: list[Seen] = []
    if takes:
        taken = await take_all(db, takes, now)
        for (index, _), result in zip(owners, taken, strict=True):
            if not result.granted:
                refused[index] = "browser"
        seen = [entry for (index, entry), result in zip(owners, taken, strict=True)
                if result.opened and refused[index] is None]
    await BrowserRepository(db).record_seen(seen, now)
    return refused


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


async def ingest_group(db: Database, submissions: list[Submission], now: datetime) -> list[Verdict]:
    """Store the submissions that are within their budgets, all in one transaction; a verdict per submission."""
    refused = await _budgets(db, submissions, now)
    docs: list[Document] = []
    owner_of: list[int] = []  # submission index of each doc
    seen: set[str] = set()
    for index, submission in enumerate(submissions):
        if refused[index] is None:
            for event in submission.events:
                doc = event_document(submission.shop_id, event, submission.received_at)
                if doc["_id"] not in seen:  # the same event in two concurrent requests counts once
                    seen.add(doc["_id"])
                    docs.append(doc)
                    owner_of.append(index)
    if not docs:
        return [Verdict(refused=reason) for reason in refused]
    # Every browser's owner as read before the write: view rows start attributed to it, and the flows hear
    # a page view of a linked browser (`browser_events`); a link racing with us is caught up after the commit.
    before = await _owners(db, {(doc["shop_id"], doc["browser_id"]) for doc in docs})

    new_keys: set[str] = set()
    intents: list[Intent] = []

    async def write(session: AsyncClientSession) -> None:
        events = EventRepository(db)
        existing = await events.existing([doc["_id"] for doc in docs], session)
        new = [doc for doc in docs if doc["_id"] not in existing]
        await events.insert(new, session)
        views = _views(new)
        await BrowserRepository(db).add_views_many(
            [BrowserViews(shop_id, browser_id, counts, before.get((shop_id, browser_id)))
             for (shop_id, browser_id), counts in views.items()], session)
        calls = [(shop_id, before[(shop_id, browser_id)], view.product_id, now)
                 for (shop_id, browser_id), counts in views.items() if before.get((shop_id, browser_id))
                 for view in counts]
        intents[:] = await db.signals.product_viewed.intend_many(db, calls, now, session=session)
        intents.extend(await db.signals.browser_events.intend_many(db, _flow_events(new, before, now), now,
                                                                   session=session))
        new_keys.clear()
        new_keys.update(doc["_id"] for doc in new)

    for attempt in range(2):
        try:
            async with db.client.start_session() as session:
                await session.with_transaction(write, write_concern=ACKNOWLEDGED)
            break
        except (DuplicateKeyError, BulkWriteError) as exc:
            # Another process stored one of these events between our check and our insert: check again.
            if attempt or not _duplicate(exc):
                raise
    await journal_barrier(db)  # the commit's j: true is not honoured by every server (storage.durability)

    new_docs = [doc for doc in docs if doc["_id"] in new_keys]
    await _after_commit(db, _views(new_docs), before, intents, now)
    stored: dict[int, int] = defaultdict(int)
    for doc, index in zip(docs, owner_of, strict=True):
        if doc["_id"] in new_keys:
            stored[index] += 1
    return [Verdict(refused=reason, stored=stored[index]) for index, reason in enumerate(refused)]


def _flow_events(new: list[Document], owners: dict[tuple[str, str], str | None],
                 now: datetime) -> list[tuple[str, list[Document], datetime]]:
    """`browser_events` calls, one per shop: its new carts, checkouts and purchases of any browser (a cart may
    belong to a customer linked later) and page views of linked browsers, each with the browser's owner."""
    by_shop: dict[str, list[Document]] = defaultdict(list)
    for doc in new:
        owner = owners.get((doc["shop_id"], doc["browser_id"]))
        if doc.get("type") != "page_view" or owner:
            by_shop[doc["shop_id"]].append({**doc, "line_user_id": owner})
    return [(shop_id, events, now) for shop_id, events in by_shop.items()]


def _duplicate(exc: DuplicateKeyError | BulkWriteError) -> bool:
    return isinstance(exc, DuplicateKeyError) or only_duplicates(exc)


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
