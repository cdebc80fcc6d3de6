"""Who of a frozen batch gets the multicast at send time: the delivery policy per recipient. Pure.

Each recipient goes through `delivery.policy.decide` like any flow's message — reachable now (a customer
who blocked or opted out since the audience was frozen is dropped with that reason), the frequency cap
across flows (a broadcast goes out at its moment or not at all: a recipient at their cap is skipped with
reason `frequency_cap`, never deferred), the holdout (recorded "held", not sent) — with no send window
(the merchant chose the moment). A recipient sent to counts toward their cap in every flow from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from delivery import policy
from delivery.flow import Intent
from delivery.policy import DeliveryPolicy
from storage.broadcasts import plan_recipients
from storage.segments import REACHABLE

FLOW = "broadcasts"
# What a frozen member is unless the customer changed since: they were reachable when frozen.
REACHABLE_AT_FREEZE: Mapping[str, Any] = REACHABLE


@dataclass
class Plan:
    """The send-time decision for one batch (stored before the multicast, so a retry repeats it).

    Stored as the exceptions only (held, skipped): the recipients are the batch's users minus those, so
    storing a plan costs a few bytes, not the batch's 500 IDs again.
    """

    to: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def as_doc(self) -> dict[str, Any]:
        return {"held": self.held, "skipped": self.skipped}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], users: Sequence[str]) -> Plan:
        held = list(doc.get("held") or [])
        skipped = {str(k): list(v) for k, v in (doc.get("skipped") or {}).items()}
        return cls(plan_recipients(users, doc), held, skipped)


def broadcast_intent(broadcast_id: str, key: str, now: datetime) -> Intent:
    """A broadcast's message as the policy sees it: marketing, due now, stale right away (never deferred)."""
    return Intent(flow=FLOW, state_key=FLOW, kind="send", state={}, cycle=broadcast_id, due_at=now, key=key,
                  stale_after=now)


def plan_batch(shop_id: str, users: Sequence[str], intent: Intent, changed: Mapping[str, Mapping[str, Any]],
               sends: Callable[[str], Sequence[datetime]], rules: DeliveryPolicy, timezone: str,
               now: datetime) -> Plan:
    """`changed`: current customer documents of members whose reachability changed since the freeze;
    `sends`: a member's earlier sends in every flow (the cap)."""
    plan = Plan()
    for user in users:
        customer = changed.get(user, REACHABLE_AT_FREEZE)
        (verdict,) = policy.decide(shop_id, user, customer, sends(user), [intent], rules, timezone, now)
        if verdict.action == "send":
            plan.to.append(user)
        elif verdict.action == "hold":
            plan.held.append(user)
        else:  # dropped (unreachable, frequency cap); a broadcast is never deferred (stale at once)
            plan.skipped.setdefault(verdict.reason or "unknown", []).append(user)
    return plan
