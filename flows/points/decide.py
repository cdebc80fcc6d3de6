"""What each points notice does for one customer at one moment: pure decisions over plain data.

The facts come from the customer document the engine joins to every contact
(`customers.points`, kept exact by the ledger's transactions and the worker's
expiry job), so a decision needs no read of its own:
- earned: "N points earned" for everything earned since the last notice (`earned_total` minus what was
  announced), with the balance — several earns before a run are one message;
- monthly: the balance (and the soonest expiry when within 30 days) once per month, when above 0;
- expiry: "N points expire on <date>", `expiry_lead_days` before each expiry moment, once per moment (lots
  expiring at the same moment are one reminder; `reminded` lists the moments reminded and still ahead); the
  flow wakes at every expiry moment to plan the next one.
A notice that would show a balance while an expiry is overdue (the worker has not written it yet) waits a
little rather than show expired points. Reachability, quiet hours, the cap and the holdout are the delivery
policy's, applied to what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.clock import as_utc
from delivery.flow import IntentKind
from storage.shop_settings import PointsSettings

EXPIRY_SOON = timedelta(days=30)  # the monthly notice names the soonest expiry when it is this close
OVERDUE_RETRY = timedelta(minutes=10)  # an expiry not yet written: look again after the worker's next pass
EARNED_STALE = timedelta(days=3)  # a capped notice is dropped when the cap would hold it longer
MONTHLY_STALE = timedelta(days=7)  # a monthly notice this late (worker down, cap) is not sent any more


@dataclass(frozen=True)
class PointsFacts:
    """The customer's points as kept on the customer document."""

    balance: int = 0
    earned_total: int = 0
    soonest_expiry_at: datetime | None = None
    soonest_expiring_amount: int | None = None

    @classmethod
    def of(cls, customer: Mapping[str, Any] | None) -> PointsFacts:
        points = (customer or {}).get("points") or {}
        expiry = points.get("soonest_expiry_at")
        return cls(int(points.get("balance") or 0), int(points.get("earned_total") or 0),
                   as_utc(expiry) if expiry is not None else None, points.get("soonest_expiring_amount"))

    def overdue(self, now: datetime) -> bool:
        """An expiry moment has passed and its entry is not written yet: the balance still holds it."""
        return self.soonest_expiry_at is not None and self.soonest_expiry_at <= now


@dataclass(frozen=True)
class Earned:
    amount: int
    balance: int


@dataclass(frozen=True)
class Monthly:
    balance: int
    expiring_amount: int | None = None
    expiring_at: datetime | None = None


@dataclass(frozen=True)
class Expiring:
    amount: int
    expires_at: datetime
    balance: int


Content = Earned | Monthly | Expiring


@dataclass(frozen=True)
class Decision:
    kind: IntentKind
    state: dict[str, Any]  # merged into the sub-state once handled (always says the next `due_at`)
    reason: str | None = None
    cycle: str = ""  # which notice: part of the retry key
    content: Content | None = None
    stale_after: datetime | None = None
    expects: dict[str, Any] = field(default_factory=dict)


def _due(state: Mapping[str, Any], now: datetime) -> datetime:
    due = state.get("due_at")
    return as_utc(due) if due is not None else now


def _end(reason: str, **state: Any) -> Decision:
    return Decision("end", {"due_at": None, **state}, reason)


def _overdue(now: datetime) -> Decision:
    return Decision("wait", {"due_at": now + OVERDUE_RETRY}, "expiry_overdue")


def decide_earned(state: Mapping[str, Any], facts: PointsFacts, settings: PointsSettings, now: datetime) -> Decision:
    announced = int(state.get("announced_total") or 0)
    expects = {"announced_total": state.get("announced_total")}
    if not settings.earned_notice:  # switched off: what was earned meanwhile is never announced later
        return Decision("end", {"due_at": None, "announced_total": facts.earned_total}, "disabled", expects=expects)
    earned = facts.earned_total - announced
    if earned <= 0:
        return _end("nothing_new")
    if facts.overdue(now):
        return _overdue(now)
    # The notice is named by what was announced before it, not by its figures: a worker that dies after the
    # push leaves a rerun the same retry key even when another earn came in meanwhile (LINE refuses the
    # second push; that earn then goes unannounced rather than counted twice).
    return Decision("send", {"due_at": None, "announced_total": facts.earned_total}, cycle=f"a{announced}",
                    content=Earned(earned, facts.balance), stale_after=_due(state, now) + EARNED_STALE,
                    expects=expects)


def decide_monthly(state: Mapping[str, Any], facts: PointsFacts, settings: PointsSettings,
                   now: datetime) -> Decision:
    month = str(state.get("month") or "")
    expects = {"month": state.get("month")}
    if not settings.monthly_notice:
        return _end("disabled")
    if facts.balance <= 0 or not month:
        return _end("no_balance")
    moment = state.get("moment")  # the month's notice moment (a deferral moves `due_at`, not this)
    due = as_utc(moment) if moment is not None else _due(state, now)
    if now >= due + MONTHLY_STALE:
        return Decision("skip", {"due_at": None, "sent_month": month}, "stale", cycle=month, expects=expects)
    if facts.overdue(now):
        return _overdue(now)
    expiring = facts.soonest_expiry_at is not None and facts.soonest_expiry_at - now <= EXPIRY_SOON
    content = Monthly(facts.balance, facts.soonest_expiring_amount if expiring else None,
                      facts.soonest_expiry_at if expiring else None)
    return Decision("send", {"due_at": None, "sent_month": month}, cycle=month, content=content,
                    stale_after=due + MONTHLY_STALE, expects=expects)


def reminder_moment(expires_at: datetime, settings: PointsSettings) -> datetime:
    return expires_at - timedelta(days=settings.expiry_lead_days)


def decide_expiry(state: Mapping[str, Any], facts: PointsFacts, settings: PointsSettings, now: datetime) -> Decision:
    expiry, amount = facts.soonest_expiry_at, facts.soonest_expiring_amount
    reminded = [as_utc(at) for at in state.get("reminded") or ()]
    expects = {"reminded": state.get("reminded")}
    if expiry is None or not amount:
        return _end("nothing_expires")
    if facts.overdue(now):
        return _overdue(now)
    # Until a lot expires, the flow wakes at its moment at the latest: the worker expires it first in that
    # tick, and the flow then finds the next lot (the expiry job writes nothing to the contacts itself).
    # The moments reminded are kept one by one (not "everything up to"): a lot earned after a reminder may
    # expire before the lot reminded, and is then reminded in its turn.
    if expiry in reminded:
        return Decision("wait", {"due_at": expiry}, "reminded")
    if not settings.expiry_reminder:
        return Decision("wait", {"due_at": expiry}, "disabled")
    moment = reminder_moment(expiry, settings)
    if now < moment:
        return Decision("wait", {"due_at": moment})
    still_ahead = sorted({at for at in reminded if at > now} | {expiry})  # passed moments are dropped
    return Decision("send", {"due_at": expiry, "reminded": still_ahead}, cycle=f"x{int(expiry.timestamp() * 1000)}",
                    content=Expiring(int(amount), expiry, facts.balance), stale_after=expiry, expects=expects)
