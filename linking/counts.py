"""The linking report of a shop: friends, blocked, linked browsers ("ブラウザ紐づき数"),
linked customers, reachable customers (friend, not blocked, not opted out, linked).

Every figure is one `count_documents` over an index (no scan of a collection),
so the report stays cheap for a shop with hundreds of thousands of customers.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from storage.browsers import BrowserRepository
from storage.customers import reachable_filter
from storage.database import Database

COUNT_FILTERS = {
    "friends": lambda shop_id: {"shop_id": shop_id, "friend": True},
    "blocked": lambda shop_id: {"shop_id": shop_id, "blocked": True},
    "linked_customers": lambda shop_id: {"shop_id": shop_id, "linked": True},
    "reachable_customers": reachable_filter,
}


@dataclass(frozen=True)
class LinkCounts:
    friends: int
    blocked: int
    linked_browsers: int
    linked_customers: int
    reachable_customers: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def link_counts(db: Database, shop_id: str) -> LinkCounts:
    customers = db["customers"]
    names = list(COUNT_FILTERS)
    counted = await asyncio.gather(
        *(customers.count_documents(COUNT_FILTERS[name](shop_id)) for name in names),
        BrowserRepository(db).count_linked(shop_id),
    )
    values = dict(zip(names, counted[:-1], strict=True))
    return LinkCounts(linked_browsers=counted[-1], **values)
