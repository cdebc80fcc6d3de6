"""The points notices' pure parts, table-tested: decisions, the monthly moment, the ledger's expiry arithmetic,
the bubbles against LINE's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.flex import FlexLimitError
from flows.points.decide import (
    Earned,
    Expiring,
    Monthly,
    PointsFacts,
    decide_earned,
    decide_expiry,
    decide_monthly,
)
from flows.points.message import Style, notice_message
from flows.points.monthly import monthly_moment
from linesim.validation import validate_request
from storage.points import effective_summary, expiry_entries, replay_lots
from storage.shop_settings import PointsSettings

NOW = datetime(2038, 1, 10, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ON = PointsSettings(monthly_notice=True)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("state", "facts", "settings", "kind", "reason", "content", "announced"),
    [
        ({}, PointsFacts(150, 150), ON, "send", None, Earned(150, 150), 150),
        ({"announced_total": 150}, PointsFacts(170, 170), ON, "send", None, Earned(20, 170), 170),
        ({"announced_total": 150}, PointsFacts(100, 150), ON, "end", "nothing_new", None, None),
        ({"announced_total": 100}, PointsFacts(50, 150), PointsSettings(earned_notice=False), "end", "disabled",
         None, 150),
        ({}, PointsFacts(150, 150, NOW, 50), ON, "wait", "expiry_overdue", None, None),
    ],
)
def test_earned(state: dict[str, Any], facts: PointsFacts, settings: PointsSettings, kind: str,
                reason: str | None, content: Any, announced: int | None) -> None:
    decision = decide_earned({"due_at": NOW, **state}, facts, settings, NOW)
    assert (decision.kind, decision.reason, decision.content) == (kind, reason, content)
    assert decision.state.get("announced_total") == announced
    if kind == "send":  # named by what was announced before it: the same key on a rerun, whatever came since
        assert decision.cycle == f"a{state.get('announced_total') or 0}" and decision.state["due_at"] is None


@pytest.mark.parametrize(
    ("state", "facts", "settings", "kind", "reason", "content"),
    [
        ({"month": "2038-01"}, PointsFacts(500, 500, NOW + 10 * DAY, 200), ON, "send", None,
         Monthly(500, 200, NOW + 10 * DAY)),
        ({"month": "2038-01"}, PointsFacts(500, 500, NOW + 31 * DAY, 200), ON, "send", None, Monthly(500)),
        ({"month": "2038-01"}, PointsFacts(0, 500), ON, "end", "no_balance", None),
        ({"month": "2038-01"}, PointsFacts(500, 500), PointsSettings(), "end", "disabled", None),
        ({"month": "2038-01", "moment": NOW - 7 * DAY}, PointsFacts(500, 500), ON, "skip", "stale", None),
        ({"month": "2038-01", "moment": NOW - 6 * DAY}, PointsFacts(500, 500), ON, "send", None, Monthly(500)),
        ({"month": "2038-01"}, PointsFacts(500, 500, NOW - DAY, 100), ON, "wait", "expiry_overdue", None),
    ],
)
def test_monthly(state: dict[str, Any], facts: PointsFacts, settings: PointsSettings, kind: str,
                 reason: str | None, content: Any) -> None:
    decision = decide_monthly({"due_at": NOW, **state}, facts, settings, NOW)
    assert (decision.kind, decision.reason, decision.content) == (kind, reason, content)
    if kind in ("send", "skip"):
        assert decision.cycle == "2038-01" and decision.state == {"due_at": None, "sent_month": "2038-01"}


EXPIRES = NOW + 7 * DAY


@pytest.mark.parametrize(
    ("state", "facts", "settings", "kind", "reason", "due"),
    [
        ({}, PointsFacts(300, 300, EXPIRES, 200), ON, "send", None, EXPIRES),
        ({}, PointsFacts(300, 300, EXPIRES + timedelta(seconds=1), 200), ON, "wait", None,
         NOW + timedelta(seconds=1)),
        ({}, PointsFacts(300, 300, NOW + 30 * DAY, 200), PointsSettings(expiry_lead_days=30), "send", None,
         NOW + 30 * DAY),
        ({"reminded": [EXPIRES]}, PointsFacts(300, 300, EXPIRES, 200), ON, "wait", "reminded", EXPIRES),
        ({"reminded": [EXPIRES - DAY]}, PointsFacts(300, 300, EXPIRES, 200), ON, "send", None, EXPIRES),
        # a lot earned after the reminder of a later one, expiring sooner: reminded in its turn
        ({"reminded": [EXPIRES + DAY]}, PointsFacts(300, 300, EXPIRES, 200), ON, "send", None, EXPIRES),
        ({"reminded": [NOW - DAY, EXPIRES + DAY]}, PointsFacts(300, 300, EXPIRES + DAY, 200), ON, "wait",
         "reminded", EXPIRES + DAY),
        ({}, PointsFacts(300, 300, EXPIRES, 200), PointsSettings(expiry_reminder=False), "wait", "disabled",
         EXPIRES),
        ({}, PointsFacts(300, 300), ON, "end", "nothing_expires", None),
        ({}, PointsFacts(300, 300, NOW, 200), ON, "wait", "expiry_overdue", NOW + timedelta(minutes=10)),
    ],
)
def test_expiry(state: dict[str, Any], facts: PointsFacts, settings: PointsSettings, kind: str,
                reason: str | None, due: datetime | None) -> None:
    decision = decide_expiry({"due_at": NOW, **state}, facts, settings, NOW)
    assert (decision.kind, decision.reason, decision.state["due_at"]) == (kind, reason, due)
    if kind == "send":
        assert decision.content == Expiring(200, facts.soonest_expiry_at, 300)  # type: ignore[arg-type]
        reminded = [at for at in state.get("reminded", []) if at > NOW]  # passed moments are dropped
        assert decision.state["reminded"] == sorted({*reminded, facts.soonest_expiry_at})
        assert decision.stale_after == facts.soonest_expiry_at


@pytest.mark.parametrize(
    ("now", "zone", "day", "hour", "month", "moment"),
    [
        ("2038-01-01T00:59:00+00:00", "Asia/Tokyo", 1, 10, "2038-01", "2038-01-01T10:00:00+09:00"),
        ("2037-12-31T15:00:00+00:00", "Asia/Tokyo", 1, 10, "2038-01", "2038-01-01T10:00:00+09:00"),  # 0:00 JST
        ("2037-12-31T14:59:00+00:00", "Asia/Tokyo", 1, 10, "2037-12", "2037-12-01T10:00:00+09:00"),
        ("2038-02-27T12:00:00+00:00", "Asia/Tokyo", 28, 23, "2038-02", "2038-02-28T23:00:00+09:00"),
        ("2038-03-15T12:00:00+00:00", "America/New_York", 14, 2, "2038-03", "2038-03-14T03:00:00-04:00"),  # DST gap
        ("2038-11-07T12:00:00+00:00", "America/New_York", 7, 9, "2038-11", "2038-11-07T09:00:00-05:00"),
    ],
)
def test_monthly_moment_in_the_shops_calendar(now: str, zone: str, day: int, hour: int, month: str,
                                              moment: str) -> None:
    assert monthly_moment(utc(now), zone, day, hour) == (month, utc(moment))


def entry(i: int, delta: int, expires: datetime | None = None, kind: str | None = None) -> dict[str, Any]:
    return {"_id": f"s:t{i}", "transaction_id": f"t{i}", "delta": delta, "expires_at": expires,
            "type": kind or ("earn" if delta > 0 else "use"), "occurred_at": NOW - 30 * DAY + i * DAY}


def test_expiry_entries_take_what_is_left_of_each_lot_past_its_date() -> None:
    lots = replay_lots([entry(0, 100, NOW - DAY), entry(1, 50, NOW - 2 * DAY), entry(2, 80, NOW + DAY),
                        entry(3, 30), entry(4, -70)])  # the use takes 50 (soonest) then 20
    written = expiry_entries("s", "U1", lots, NOW, balance=190)
    assert [(e["transaction_id"], e["amount"], e["delta"], e["occurred_at"], e["lot"]) for e in written] == [
        ("expiry/t0", 80, -80, NOW - DAY, "t0")]
    assert effective_summary(190, lots, NOW) == effective_summary(110, replay_lots(
        [entry(0, 100, NOW - DAY), entry(1, 50, NOW - 2 * DAY), entry(2, 80, NOW + DAY), entry(3, 30),
         entry(4, -70), {**written[0], "created_at": NOW}]), NOW)
    assert effective_summary(190, lots, NOW).balance == 110
    assert effective_summary(190, lots, NOW).soonest_expiry_at == NOW + DAY
    # A balance short of the lots (never written by us) is never taken below zero.
    assert [e["amount"] for e in expiry_entries("s", "U1", lots, NOW, balance=30)] == [30]


STYLE = Style("テストショップ" * 20, "Asia/Tokyo", "#06C755", "#FFFFFF", "ショップを見る")


@pytest.mark.parametrize("content", [Earned(150, 1_000_000), Monthly(999_999_999, 1, NOW), Monthly(5),
                                     Expiring(300, NOW, 500)])
def test_every_bubble_is_a_message_line_accepts(content: Any) -> None:
    message = notice_message(content, STYLE, "https://shop-bot.test/r/token")
    assert validate_request("PushMessageRequest", {"to": "U1", "messages": [message]}) == []
    assert notice_message(content, STYLE, None)["contents"].get("footer") is None


def test_a_builder_refuses_what_line_would() -> None:
    with pytest.raises(FlexLimitError):
        notice_message(Earned(1, 1), STYLE, "https://x.test/" + "a" * 30_000)
