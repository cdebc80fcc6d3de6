"""The contract between the delivery engine and a flow.

A flow owns some state keys in every contact's `flows` map (browse reminders
own "reminders", a step sequence "seq:<id>", …). When one of its sub-states is
due, the engine asks the flow for an `Intent`: what it would do now (send a
message, skip a step with a reason, wait until later, end) and the fields of
the sub-state after that. The flow decides *what* — from plain data, with no
I/O except the per-run reads of `prepare` — and never sends, claims, writes or
applies the policy: reachability, windows, the frequency cap and the holdout
are the engine's (`delivery.policy`), the same for every flow.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Literal, Protocol

from core.line_client import retry_key_for
from storage.contacts import Lookup
from storage.database import Database, Document

IntentKind = Literal["send", "skip", "wait", "end"]
ALL_DAYS = frozenset(range(7))


@dataclass(frozen=True)
class Window:
    """When a marketing send may go out, in the shop's time zone (`delivery.windows`).

    `quiet`: sends are held back inside [start, end) (quiet hours, may cross midnight);
    otherwise sends go out only inside [start, end) on `weekdays` (a sequence's send window).
    """

    reason: str  # recorded on a deferral: "quiet_hours", "send_window"
    start: time
    end: time
    quiet: bool = True
    weekdays: frozenset[int] = ALL_DAYS  # 0 = Monday


@dataclass
class Intent:
    """What a flow would do for one of a contact's sub-states at one moment."""

    flow: str  # the report's name of the flow ("reminders")
    state_key: str  # the key in the contact's `flows`
    kind: IntentKind
    # Fields merged into the sub-state once this is handled (sent, held out, dropped by the policy, failed
    # for good, skipped) — or, for wait/end, right away. Always says the next `due_at` (None: nothing due).
    state: dict[str, Any]
    step: int | None = None  # 1-based, for reports
    cycle: str = ""  # which journey (browse cycle, cart token, sequence run): part of the retry key
    reason: str | None = None  # why a step is skipped, or why it ends
    due_at: datetime | None = None  # when the step fell due
    messages: list[dict[str, Any]] | None = None  # LINE message objects, pushed as they are (never mutate)
    encoded: bytes | None = None  # or the same as a JSON array already encoded (compact UTF-8): pushed as is
    key: str | None = None  # the retry key (`delivery_key`); also names the record and its click links
    window: Window | None = None  # when the send may go out (the policy defers to the next allowed moment)
    # The frequency cap defers a send until the cap allows it — unless that is after `stale_after`,
    # then the step is dropped with reason "frequency_cap" (None: never stale, always defer).
    stale_after: datetime | None = None
    marketing: bool = True  # False: a notice the cap and the holdout do not apply to
    detail: dict[str, Any] = field(default_factory=dict)  # extra fields for the record (e.g. products shown)
    # Fields of the sub-state that must still hold for `state` to apply when an ingest write changed the
    # contact while the engine held it (e.g. the same cycle and step); otherwise the fresh state wins.
    expects: dict[str, Any] = field(default_factory=dict)


def delivery_key(shop_id: str, line_user_id: str, flow: str, cycle: str, step: int | None) -> str:
    """The retry key of one step of one journey: the same on every retry, in every worker."""
    return retry_key_for(shop_id, line_user_id, flow, cycle, step)


class Flow(Protocol):
    """What a flow brings to the engine (see the module docstring)."""

    name: str

    @property
    def lookups(self) -> Sequence[Lookup]:
        """Collections the plan needs, joined to each claimed contact by `_id` (no extra round trip)."""
        ...

    def owns(self, state_key: str) -> bool: ...

    async def prepare(self, database: Database, shop_ids: Collection[str]) -> None:
        """Per-run reads (settings, catalogue), once per shop; cached for the run."""

    def plan(self, contact: Document, state_key: str, state: Mapping[str, Any], now: datetime) -> Intent:
        """The decision for a due sub-state (pure over the contact, its joined documents and the run's caches)."""
        ...


RecordStatus = Literal["sent", "skipped", "failed", "held", "deferred"]


@dataclass(frozen=True)
class Record:
    """One line of the delivery log (a message's fate), as the engine writes it and reports read it."""

    key: str
    user: str
    step: int | None
    status: RecordStatus
    reason: str | None = None
    group: Literal["treated", "holdout"] | None = None
    sent_at: datetime | None = None
    until: datetime | None = None
    cycle: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"key": self.key, "user": self.user, "step": self.step, "status": self.status}
        for name in ("reason", "group", "sent_at", "until"):
            value = getattr(self, name)
            if value is not None:
                item[name] = value
        if self.cycle:
            item["cycle"] = self.cycle
        if self.detail:
            item.update(self.detail)
        return item
