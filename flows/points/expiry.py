"""The worker's `points_expiry` job: at each lot's expiry moment, write its `expire` entry and lower the balance.

Finds the customers with a lot past its date through the customers' expiry
index (`points.soonest_expiry_at`, kept by every ledger write), shop by shop,
and expires them in chunks, each chunk one transaction (`PointsRepository.
expire_due`). Safe to run on several workers at once and to rerun: an expiry's
ledger ID is derived from its lot, so a second writer fails and reads again
instead of expiring twice, and a racing earn or use is serialised with it on
the customer's document. Listed before the delivery job, so the notices of a
tick see the balances after its expiries.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from delivery.context import JobContext, JobSummary
from storage.points import EXPIRY_SCAN, PointsRepository


async def expire_points(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
    repo = PointsRepository(ctx.database)
    shop_ids = [shop_id] if shop_id is not None else [
        doc["_id"] async for doc in ctx.database.shops.find({}, {"_id": 1})]
    summary: Counter[str] = Counter()
    for shop in shop_ids:
        # One pass over the due set (a customer the pass meets twice, or one a post expired meanwhile, is
        # skipped inside the transaction, which reads it afresh).
        due: list[str] = []
        async for doc in repo.due_cursor(shop, now):
            due.append(str(doc["line_user_id"]))
            if len(due) >= EXPIRY_SCAN:
                summary.update(await _expire(repo, shop, due, now))
                due = []
        if due:
            summary.update(await _expire(repo, shop, due, now))
    return {name: n for name, n in summary.items() if n}


async def _expire(repo: PointsRepository, shop_id: str, users: list[str], now: datetime) -> Counter[str]:
    done = await repo.expire_due(shop_id, users, now)
    return Counter(customers=done.customers, entries=done.entries, points=done.points)
