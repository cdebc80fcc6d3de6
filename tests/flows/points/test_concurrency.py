"""Concurrent earns and uses during expiry runs (three, as on three workers) never give a wrong or negative balance;
customers without a transaction meanwhile are expired by the runs, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from bot.typedefs import DATABASE, LINE, SETTINGS
from delivery.context import JobContext
from flows.points.expiry import expire_points
from storage.points import replay_lots
from tests.flows.points.conftest import World
from tests.flows.points.test_monthly import tokyo

USERS = [f"U{i:032x}" for i in range(1, 5)]
IDLE = [f"U{i:032x}" for i in range(100, 130)]  # no transaction during the runs: only a worker expires them
EARNS, USES = 6, 6  # per customer: 4 × 12 = 48 concurrent transactions, with three expiry runs


async def test_concurrent_earns_and_uses_during_expiry_runs_keep_every_balance_exact(world: World) -> None:
    await world.settings(earned_notice=False, expiry_reminder=False)
    moment = tokyo(2038, 1, 31, 23, 59)
    world.clock.set(tokyo(2038, 1, 10, 12, 0))
    for user in USERS + IDLE:
        await world.earn(user, f"{user}-a", 300, expires_at=moment)
        await world.earn(user, f"{user}-b", 1000, expires_at=moment + timedelta(days=90))
    now = moment + timedelta(minutes=1)
    world.clock.set(now)
    app = world.client.app
    ctx = JobContext(database=app[DATABASE], line=app[LINE], settings=app[SETTINGS], worker_id="test")

    async def transaction(user: str, kind: str, i: int) -> int:
        body = {"transaction_id": f"{user}-{kind}-{i}", "line_user_id": user, "type": kind,
                "amount": 10 if kind == "earn" else 200}
        response = await world.client.post(f"{world.base}/points/transactions", json=body, headers=world.shop.auth)
        return response.status

    calls: list[Any] = [transaction(user, kind, i) for i in range(max(EARNS, USES)) for user in USERS
                        for kind, n in (("earn", EARNS), ("use", USES)) if i < n]
    # The expiry runs start at the beginning, in the middle and at the end of the transactions.
    runs = [0, len(calls) // 2 + 1, len(calls) + 2]
    for at in runs:
        calls.insert(at, expire_points(ctx, now, None))
    results = await asyncio.gather(*calls)
    statuses = [status for i, status in enumerate(results) if i not in runs]
    assert len(statuses) >= 30 and set(statuses) <= {201, 409}
    by_runs = sum(results[i].get("entries", 0) for i in runs)
    # Every idle customer's lot by a worker (once: the three runs overlapped the transactions), the active
    # customers' by a worker or by their first post, whichever came first.
    assert len(IDLE) <= by_runs <= len(IDLE) + len(USERS)
    for user in IDLE:
        assert [e["amount"] for e in await world.ledger(user, "expire")] == [300]
        assert await world.balance(user) == 1000

    for user in USERS:
        ledger = await world.ledger(user)
        uses = [e for e in ledger if e["type"] == "use"]
        # 1,000 left after the expiry, 60 earned: five uses of 200 fit, whatever the order, never six.
        assert len(uses) == 5
        assert [(e["amount"], e["lot"]) for e in ledger if e["type"] == "expire"] == [(300, f"{user}-a")]
        balance = await world.balance(user)
        assert balance == 1000 + 10 * EARNS - 200 * 5 == sum(e["delta"] for e in ledger)
        assert sum(lot.amount for lot in replay_lots(ledger)) == balance
    assert (await world.run(now + timedelta(minutes=1)))["points_expiry"] == {}
