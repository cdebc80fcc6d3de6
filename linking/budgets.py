"""Per-minute budgets of browser events: each browser's, and each shop's, as the tracking endpoint takes them.

A browser may send `limit` events a minute; a flood from one browser (a bot, a
loop in a page) is refused with 429 before it spends the shop's budget. A
browser's budget is counted in the process that takes its requests, in memory:
a write per browser per request group was most of what the database did for
browser events (about a millisecond each on the embedded database). With
several web processes behind a balancer that spreads one browser's requests, a
browser may get up to `limit` events a minute from each - still capped, and the
shop's budget holds.

A shop's budget is shared by every web process (`storage.rate_budgets`), and
taken from there in slices (`ShopBudgets`): a process takes a fiftieth of the
shop's minute at a time and grants requests from it in memory, so the shared
document is written once per slice instead of once per request group (on the
embedded database a write in front of every acknowledgement). What a process
leaves of its slice at the end of a minute is not granted to anyone else: the
shop may get up to a fiftieth of its budget less per process, never more.

`BrowserBudgets.take` also says whether this is the browser's first event of
the minute here: its own document (`last_seen_at`) is written then, at most
once a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage.database import Database
from storage.rate_budgets import Take, minute_of, take_all

SLICES_PER_MINUTE = 50  # a process takes a shop's minute budget in slices of this fraction (see above)


@dataclass(frozen=True)
class BrowserTake:
    granted: bool
    opens: bool = False  # the browser's first granted take of this minute in this process


@dataclass
class BrowserBudgets:
    limit: int  # events per browser per minute
    _minute: datetime | None = None
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def take(self, shop_id: str, browser_id: str, events: int, now: datetime) -> BrowserTake:
        """Take `events` of the browser's budget for `now`'s minute; a refused take changes nothing."""
        minute = minute_of(now)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        key = (shop_id, browser_id)
        used = self._counts.get(key, 0)
        if events <= 0 or used + events > self.limit:
            return BrowserTake(False)
        self._counts[key] = used + events
        return BrowserTake(True, opens=used == 0)

    def give_back(self, shop_id: str, browser_id: str, events: int, now: datetime) -> None:
        """Undo a take whose request was refused by the shop's budget or failed to store."""
        key = (shop_id, browser_id)
        if minute_of(now) == self._minute and key in self._counts:
            self._counts[key] = max(0, self._counts[key] - events)


@dataclass
class ShopBudgets:
    """Each shop's per-minute budget, taken from the shared one in slices (see the module docstring)."""

    _minute: datetime | None = None
    _left: dict[str, int] = field(default_factory=dict)  # of this process's slices, this minute

    async def take(self, db: Database, needs: dict[str, tuple[int, int]], now: datetime) -> dict[str, bool]:
        """shop -> (events, the shop's limit): granted? At most two shared writes for all shops together."""
        minute = minute_of(now)
        if minute != self._minute:
            self._minute, self._left = minute, {}
        granted: dict[str, bool] = {}
        short: dict[str, tuple[int, int, int]] = {}  # shop -> (left reserved from our slice, missing, limit)
        for shop_id, (events, limit) in needs.items():
            left = self._left.get(shop_id, 0)
            self._left[shop_id] = max(0, left - events)  # reserved now: other groups may take turns meanwhile
            if events <= left:
                granted[shop_id] = True
            else:
                short[shop_id] = (left, events - left, limit)
        for exact in (False, True):  # a whole slice first; only what is missing, when no whole slice is left
            shops = [shop for shop in short if not exact or short[shop][1] < short[shop][2] // SLICES_PER_MINUTE]
            if not shops:  # (asking again for what was just refused would be refused again)
                break
            asks = [short[shop][1] if exact else max(short[shop][1], short[shop][2] // SLICES_PER_MINUTE)
                    for shop in shops]
            taken = await take_all(db, [Take(f"s|{shop}", ask, short[shop][2])
                                        for shop, ask in zip(shops, asks, strict=True)], now)
            for shop, ask, result in zip(shops, asks, taken, strict=True):
                if result.granted:
                    _, missing, _ = short.pop(shop)
                    granted[shop] = True
                    if self._minute == minute:  # (a slice of a minute gone by is of no use)
                        self._left[shop] = self._left.get(shop, 0) + ask - missing
        for shop, (reserved, _, _) in short.items():
            granted[shop] = False
            self.give_back(shop, reserved, now)
        return granted

    def give_back(self, shop_id: str, events: int, now: datetime) -> None:
        """Return what a request took but did not use (refused by a browser's budget, or failed to store)."""
        if minute_of(now) == self._minute:
            self._left[shop_id] = self._left.get(shop_id, 0) + events
