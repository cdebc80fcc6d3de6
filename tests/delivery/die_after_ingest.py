"""`python -m tests.delivery.die_after_ingest KIND SHOP USER AT`: a web process that performs one real ingest
(an order, a browser link or a product view) and is killed right after the ingest write, before any
listener runs (its signal's `deliver` exits the process with `os._exit`, as a SIGKILL would)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime

from admin_api.orders import OrderBody, order_fields
from core.settings import load_settings
from flows.listeners import connect_listeners
from linking import ingest
from linking.budgets import BrowserBudgets
from linking.ingest import Budgets, Submission, acknowledge, process
from linking.links import link_browser
from linking.tracking import BrowserEvent
from storage import schema, signals
from storage.lifecycle import open_database
from storage.orders import OrderRepository


async def _die(self: signals.Intent) -> bool:
    os._exit(9)


async def main(kind: str, shop_id: str, user: str, at: datetime) -> None:
    settings = load_settings()
    async with open_database(settings.mongodb_uri, settings.mongodb_db, settings.data_dir, schema.INDEXES) as db:
        connect_listeners(db.signals)
        signals.Intent.deliver = _die  # type: ignore[method-assign]
        # The name `process` calls: linking.ingest imports it from storage.signals (not its own export).
        ingest.deliver_all = _die_all  # type: ignore[attr-defined]
        if kind == "order":
            body = OrderBody.model_validate({"order_id": "o-killed", "line_user_id": user, "status": "paid",
                                             "total": 7000, "ordered_at": at.isoformat(),
                                             "items": [{"product_id": "p1", "quantity": 1, "price": 7000}]})
            await OrderRepository(db).record(shop_id, "o-killed", order_fields(body, user), at)
        elif kind == "link":
            await link_browser(db, shop_id, "b-killed", user, "import", at)
        elif kind == "view":
            event = BrowserEvent(event_id="e-killed", browser_id=f"b-{user}", type="page_view",
                                 url="https://shop.example/products/p1", product_id="p1")
            submission = Submission(shop_id, [event.model_dump(exclude_none=True)], at, 10_000)
            acknowledged = await acknowledge(db, [submission], Budgets(BrowserBudgets(120)), at)
            await process(db, acknowledged.items, at)
    sys.exit(3)  # the ingest did not reach its listeners' delivery: the test would fail


async def _die_all(intents: object) -> None:
    os._exit(9)


if __name__ == "__main__":
    kind, shop, user, at = sys.argv[1:5]
    asyncio.run(main(kind, shop, user, datetime.fromisoformat(at)))
