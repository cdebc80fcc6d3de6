"""A step's filter and its text placeholders: pure functions, table-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.line_limits import MAX_TEXT, utf16_len
from flows.sequences.definition import Step, StepFilter, longest_text
from flows.sequences.filters import failed_check, first_seen
from flows.sequences.render import render

NOW = datetime(2037, 12, 10, 1, 0, tzinfo=UTC)
CUSTOMER: dict[str, Any] = {"display_name": "花子", "tags": ["会員", "VIP"], "points": {"balance": 12345},
                            "totals": {"purchase_count": 2, "total_spend": 8000,
                                       "first_seen_at": NOW - timedelta(days=30)}}
VISIT: dict[str, Any] = {"at": NOW - timedelta(days=2), "utm": {"source": "Instagram", "term": "spring-sale"}}


@pytest.mark.parametrize(
    ("rules", "visit", "failed"),
    [
        ({}, VISIT, None),
        ({"first_seen_within_days": 3}, None, "first_seen_within_days"),  # we met them 30 days ago
        ({"first_seen_within_days": 31}, None, None),
        ({"first_seen_within_days": 40}, VISIT, None),
        ({"first_seen_within_days": 1}, VISIT, "first_seen_within_days"),
        ({"total_spent": {"max": 0}}, VISIT, "total_spent"),
        ({"total_spent": {"min": 8000, "max": 8000}}, VISIT, None),
        ({"total_spent": {"min": 8001}}, VISIT, "total_spent"),
        ({"purchase_count": {"min": 1, "max": 2}}, VISIT, None),
        ({"purchase_count": {"max": 1}}, VISIT, "purchase_count"),
        ({"utm": {"source": "instagram", "term": "SPRING-SALE"}}, VISIT, None),  # case aside
        ({"utm": {"term": "winter"}}, VISIT, "utm.term"),
        ({"utm": {"medium": "cpc"}}, VISIT, "utm.medium"),  # the landing had no medium
        ({"utm": {"source": "instagram"}}, None, "utm.source"),  # no first visit known
        ({"tags_all": ["会員", "VIP"]}, VISIT, None),
        ({"tags_all": ["会員", "退会"]}, VISIT, "tags_all"),
        ({"tags_none": ["退会"]}, VISIT, None),
        ({"tags_none": ["VIP"]}, VISIT, "tags_none"),
        ({"total_spent": {"max": 0}, "tags_none": ["VIP"]}, VISIT, "total_spent"),  # the first failing check
    ],
)
def test_filters(rules: dict[str, Any], visit: dict[str, Any] | None, failed: str | None) -> None:
    assert failed_check(StepFilter.model_validate(rules), CUSTOMER, visit, NOW) == failed


def test_no_filter_and_an_unknown_customer() -> None:
    assert failed_check(None, None, None, NOW) is None
    assert failed_check(StepFilter.model_validate({"total_spent": {"max": 0}}), None, None, NOW) is None
    assert failed_check(StepFilter(first_seen_within_days=3), None, None, NOW) == "first_seen_within_days"


def test_first_seen_is_the_earliest_we_know() -> None:
    assert first_seen(CUSTOMER, VISIT) == NOW - timedelta(days=30)
    assert first_seen(CUSTOMER, {"at": NOW - timedelta(days=90)}) == NOW - timedelta(days=90)
    assert first_seen({}, None) is None


def test_placeholders_are_filled_and_never_exceed_lines_limit() -> None:
    step = Step(wait_minutes=1, messages=[{"type": "text", "text": "{display_name}さん {points}pt {unknown}"},
                                          {"type": "sticker", "packageId": "1", "stickerId": "2"}])
    rendered = render(step.messages, CUSTOMER)
    assert rendered[0]["text"] == "花子さん 12,345pt {unknown}" and rendered[1] == step.messages[1]
    assert step.messages[0]["text"].startswith("{display_name}")  # the definition is untouched
    assert render(step.messages, {"display_name": "  "})[0]["text"].startswith("お客様さん 0pt")
    template = "{display_name}" + "あ" * (MAX_TEXT - 100)
    assert longest_text(template) == MAX_TEXT
    long_name = {"display_name": "😀" * 300}
    assert utf16_len(render([{"type": "text", "text": template}], long_name)[0]["text"]) <= MAX_TEXT
