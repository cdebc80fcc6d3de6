"""Each browser's per-minute event budget, kept in the process that takes its requests.

A browser may send `limit` events a minute; a flood from one browser (a bot, a
loop in a page) is refused with 429 before it spends the shop's budget. The
shop's own budget is shared by every web process (`storage.rate_budgets`, one
write per request group); a browser's is counted here, in memory: a write per
browser per group was most of what the database did for browser events (about
a millisecond each on the embedded database). With several web processes
behind a balancer that spreads one browser's requests, a browser may get up to
`limit` events a minute from each - still capped, and the shop's budget holds.

`take` also says whether this is the browser's first event of the minute here:
its own document (`last_seen_at`) is written then, at most once a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage.rate_budgets import minute_of


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
