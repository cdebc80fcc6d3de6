"""The one delivery policy every marketing send of every flow goes through: pure functions over plain data.

For each contact the engine hands over the flows' intents at `now`; for each
it answers a `Verdict`, in this order:
1. reachable — a friend, not blocked, not opted out (else the step is dropped with that reason; a flow's own
   skip reason gives way to it, so "blocked" is what a report shows for a blocked customer);
2. window — quiet hours or the flow's send window in the shop's time zone: outside it the send is deferred
   to the next allowed moment, never dropped;
3. frequency cap — at most `per_day` sends in any 24 hours and `per_week` in any 7 days, across all flows:
   a capped send is deferred to when the cap allows it, or dropped (reason "frequency_cap") when that is
   after the flow's `stale_after`;
4. holdout — a stable random share of customers per flow (`holdout_percent`) is recorded as "would have been
   sent" (held) and not sent, after the checks above so the two groups meet the same conditions;
5. send.
Skip, wait and end intents pass through (a skip may take the unreachable reason).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from delivery.flow import Intent
from delivery.windows import next_allowed
from storage.customers import unmessageable_reason

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
HOLDOUT_BUCKETS = 10_000

Action = Literal["send", "defer", "drop", "hold", "skip", "apply"]


@dataclass(frozen=True)
class DeliveryPolicy:
    """A shop's policy settings (`PUT /settings/delivery`)."""

    per_day: int | None = None
    per_week: int | None = None
    holdout_percent: float = 0.0


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str | None = None
    until: datetime | None = None  # a deferral's moment

    @property
    def recorded(self) -> bool:
        """Whether the intent's step is handled for good (its `state` applies and a record is written)."""
        return self.action in ("send", "drop", "hold", "skip")


def unreachable_reason(customer: Mapping[str, Any] | None) -> str | None:
    """Why we may not push marketing messages to this customer at all (None: we may)."""
    return "unknown_customer" if customer is None else unmessageable_reason(customer)


def holdout_bucket(shop_id: str, flow: str, line_user_id: str) -> int:
    """A stable pseudo-random bucket in [0, 10,000): the same customer lands in the same one for a flow."""
    digest = hashlib.sha256(f"{shop_id}\x1f{flow}\x1f{line_user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HOLDOUT_BUCKETS


def in_holdout(shop_id: str, flow: str, line_user_id: str, percent: float) -> bool:
    return percent > 0 and holdout_bucket(shop_id, flow, line_user_id) < round(percent * HOLDOUT_BUCKETS / 100)


def cap_allows_at(sent: Sequence[datetime], now: datetime, policy: DeliveryPolicy) -> datetime:
    """The first moment ≥ now at which one more send keeps both caps (rolling 24 hours and 7 days)."""
    allowed = now
    for limit, span in ((policy.per_day, DAY), (policy.per_week, WEEK)):
        if limit is None:
            continue
        recent = sorted(at for at in sent if at > now - span)
        if len(recent) >= limit:
            # The send that must leave the span first so that only limit - 1 remain in it.
            allowed = max(allowed, recent[len(recent) - limit] + span)
    return allowed


def decide(shop_id: str, line_user_id: str, customer: Mapping[str, Any] | None, sent: Sequence[datetime],
           intents: Sequence[Intent], policy: DeliveryPolicy, timezone: str, now: datetime) -> list[Verdict]:
    """The verdict on each of one contact's intents at `now` (sends in due order share the cap)."""
    verdicts: list[Verdict | None] = [None] * len(intents)
    unreachable = unreachable_reason(customer)
    admitted = list(sent)
    order = sorted(range(len(intents)), key=lambda i: (intents[i].due_at or now, i))
    for index in order:
        intent = intents[index]
        verdicts[index] = _one(shop_id, line_user_id, unreachable, admitted, intent, policy, timezone, now)
        if verdicts[index].action == "send" and intent.marketing:  # type: ignore[union-attr]
            admitted.append(now)
    return [v for v in verdicts if v is not None]


def _one(shop_id: str, line_user_id: str, unreachable: str | None, sent: Sequence[datetime], intent: Intent,
         policy: DeliveryPolicy, timezone: str, now: datetime) -> Verdict:
    if intent.kind in ("wait", "end"):
        return Verdict("apply")
    if intent.kind == "skip":
        return Verdict("skip", unreachable or intent.reason)
    if unreachable is not None:
        return Verdict("drop", unreachable)
    if intent.window is not None:
        until = next_allowed(now, intent.window, timezone)
        if until is not None:
            return Verdict("defer", intent.window.reason, until)
    if intent.marketing:
        allowed = cap_allows_at(sent, now, policy)
        if allowed > now:
            if intent.stale_after is not None and allowed > intent.stale_after:
                return Verdict("drop", "frequency_cap")
            return Verdict("defer", "frequency_cap", allowed)
        if in_holdout(shop_id, intent.flow, line_user_id, policy.holdout_percent):
            return Verdict("hold", "holdout")
    return Verdict("send")
