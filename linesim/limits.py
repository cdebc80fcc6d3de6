"""Rate limits, retry keys, monthly quota and injected faults.

These are checked in a fixed order by the API middleware (fault, rate limit)
and by the send handlers (retry key, quota) so that a rejected request never
consumes a retry key or quota.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .state import Channel, Fault, RetryRecord, SimState, month_key

RATE_LIMIT_MESSAGE = "The API rate limit has been exceeded. Try again later."
QUOTA_MESSAGE = "You have reached your monthly limit."
RETRY_KEY_ENDPOINTS = frozenset({"push", "multicast", "narrowcast", "broadcast"})


def _limit(spec: Any) -> tuple[float, float] | None:
    """(max requests, window seconds) from a number or {"limit", "window"}."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        return float(spec["limit"]), float(spec.get("window", 1.0))
    return float(spec), 1.0


def allow_request(state: SimState, channel: Channel, endpoint: str) -> bool:
    """Sliding-window rate limit per channel and endpoint; records the hit."""
    limit = _limit(state.config.rate_limits.get(endpoint))
    if limit is None:
        return True
    max_requests, window = limit
    now = state.now()
    hits = channel.windows.setdefault(endpoint, deque())
    while hits and hits[0] <= now - window:
        hits.popleft()
    if len(hits) >= max_requests:
        return False
    hits.append(now)
    return True


def take_fault(state: SimState, endpoint: str) -> Fault | None:
    """Pop one use of the oldest fault queued for this endpoint (or "*")."""
    for key in (endpoint, "*"):
        queue = state.faults.get(key)
        if queue:
            fault = queue[0]
            fault.count -= 1
            if fault.count <= 0:
                queue.pop(0)
            return fault
    return None


def add_fault(state: SimState, data: dict[str, Any]) -> Fault:
    fault = Fault(
        status=data.get("status"),
        latency_ms=int(data.get("latency_ms") or 0),
        drop=bool(data.get("drop")),
        count=int(data.get("count", 1)),
    )
    state.faults.setdefault(data.get("endpoint", "*"), []).append(fault)
    return fault


def accepted_retry(state: SimState, channel: Channel, key: str) -> RetryRecord | None:
    """The earlier acceptance of this key, if still retained.

    Keys are kept in acceptance order, so expiry pops from the front: O(1) per
    request however many keys a long run has sent (a full scan made linesim the
    bottleneck of the reminder benchmark).
    """
    cutoff = state.now() - state.config.retry_key_retention
    keys = channel.retry_keys
    while keys:
        oldest = next(iter(keys))
        if keys[oldest].accepted_at > cutoff:
            break
        del keys[oldest]
    record = keys.get(key)
    if record is not None and record.accepted_at <= cutoff:  # the test clock moved backwards meanwhile
        del keys[key]
        return None
    return record


def remember_retry(state: SimState, channel: Channel, key: str, request_id: str,
                   sent_messages: list[dict[str, Any]] | None) -> None:
    channel.retry_keys[key] = RetryRecord(request_id, state.now(), sent_messages)


def quota_for(state: SimState) -> int | None:
    return state.config.monthly_quota


def usage(state: SimState, channel: Channel) -> int:
    return channel.usage.get(month_key(state.now()), 0)


def consume_quota(state: SimState, channel: Channel, recipients: int) -> bool:
    """Count recipients toward this month's quota; False (nothing counted) if over."""
    quota = quota_for(state)
    month = month_key(state.now())
    used = channel.usage.get(month, 0)
    if quota is not None and used + recipients > quota:
        return False
    channel.usage[month] = used + recipients
    return True
