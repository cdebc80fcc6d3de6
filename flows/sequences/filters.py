"""A step's filter, checked just before its send: pure over the customer, their first visit and `now`.

"First seen" is the earliest we know of the customer: the first visit of any of
their browsers (`storage.first_visits`, carried by the run) or, for a customer we met on LINE first, when
their customer record was made. "First-visit UTM" is the landing UTM of their
earliest browser. A filtered-out step is skipped with the failing check as its
reason; the run goes on to the next step.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from core.clock import as_utc
from flows.sequences.definition import Range, StepFilter

REASON_PREFIX = "filter:"


def first_seen(customer: Mapping[str, Any] | None, first_visit: Mapping[str, Any] | None) -> datetime | None:
    moments = [as_utc(at) for at in ((first_visit or {}).get("at"),
                                     ((customer or {}).get("totals") or {}).get("first_seen_at"))
               if isinstance(at, datetime)]
    return min(moments) if moments else None


def _within(value: int, bounds: Range) -> bool:
    return (bounds.min is None or value >= bounds.min) and (bounds.max is None or value <= bounds.max)


def failed_check(rules: StepFilter | None, customer: Mapping[str, Any] | None,
                 first_visit: Mapping[str, Any] | None, now: datetime) -> str | None:
    """The first check that does not hold (its field name, e.g. "utm.term"); None when the step may go out."""
    if rules is None:
        return None
    totals = (customer or {}).get("totals") or {}
    if rules.first_seen_within_days is not None:
        seen = first_seen(customer, first_visit)
        if seen is None or seen < now - timedelta(days=rules.first_seen_within_days):
            return "first_seen_within_days"
    if rules.total_spent is not None and not _within(int(totals.get("total_spend") or 0), rules.total_spent):
        return "total_spent"
    if rules.purchase_count is not None and not _within(int(totals.get("purchase_count") or 0), rules.purchase_count):
        return "purchase_count"
    if rules.utm is not None:
        landing = (first_visit or {}).get("utm") or {}
        for name, wanted in rules.utm.model_dump(exclude_none=True).items():
            have = landing.get(name)
            if not isinstance(have, str) or have.casefold() != str(wanted).casefold():
                return f"utm.{name}"
    tags = set((customer or {}).get("tags") or [])
    if rules.tags_all and not set(rules.tags_all) <= tags:
        return "tags_all"
    if rules.tags_none and set(rules.tags_none) & tags:
        return "tags_none"
    return None


def skip_reason(check: str) -> str:
    """The delivery record's reason for a step its filter skipped."""
    return REASON_PREFIX + check
