"""Chart geometry (pure): bars only where a day has a value, scaled to a round top, never invisible."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from dashboard.charts import BOTTOM, HEIGHT, TOP, compact, daily_chart, funnel, nice_ceiling

DAY = date(2037, 12, 1)


def series(*values: int) -> list[tuple[date, int]]:
    return [(DAY + timedelta(days=i), v) for i, v in enumerate(values)]


@pytest.mark.parametrize(("value", "expected"), [
    (0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (7, 10), (10, 10), (11, 20), (12800, 20000), (99, 100), (101, 200),
])
def test_nice_ceiling(value: float, expected: int) -> None:
    assert nice_ceiling(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (0, "0"), (5, "5"), (9999, "9,999"), (10000, "1万"), (12800, "1.28万"), (250000, "25万"), (300_000_000, "3億"),
])
def test_compact_axis_labels(value: float, expected: str) -> None:
    assert compact(value) == expected


def test_a_bar_for_each_day_with_a_value_and_none_for_zero_days() -> None:
    chart = daily_chart("sent", "送信数", series(0, 5, 0, 2, 1))
    assert [(b.day, b.value) for b in chart.bars] == [(DAY + timedelta(days=1), 5), (DAY + timedelta(days=3), 2),
                                                     (DAY + timedelta(days=4), 1)]
    assert chart.total == 8 and chart.days == 5 and not chart.empty
    plot = HEIGHT - TOP - BOTTOM
    heights = {b.value: b.height for b in chart.bars}
    assert heights[5] == plot  # 5 is the round top
    assert heights[2] == pytest.approx(plot * 2 / 5) and heights[1] == pytest.approx(plot / 5)
    assert all(b.y + b.height == pytest.approx(TOP + plot) for b in chart.bars)  # bars stand on the axis
    xs = [b.x for b in chart.bars]
    assert xs == sorted(xs) and all(b.width > 0 for b in chart.bars)


def test_an_empty_period_draws_no_bar_and_says_so() -> None:
    chart = daily_chart("clicks", "クリック数", series(0, 0, 0))
    assert chart.bars == [] and chart.empty and chart.total == 0


def test_a_tiny_value_next_to_a_huge_one_is_still_visible() -> None:
    chart = daily_chart("revenue", "売上", series(1, 10_000_000))
    assert chart.bars[0].height >= 1


def test_a_year_of_days_fits_with_at_most_six_day_labels() -> None:
    chart = daily_chart("sent", "送信数", series(*([1] * 366)))
    assert len(chart.bars) == 366 and 1 <= len(chart.day_labels) <= 6
    assert chart.bars[-1].x + chart.bars[-1].width <= chart.right


def test_ticks_are_whole_numbers() -> None:
    assert [t.label for t in daily_chart("sent", "", series(1)).ticks] == ["0", "1"]
    assert [t.label for t in daily_chart("sent", "", series(2)).ticks] == ["0", "1", "2"]
    assert [t.label for t in daily_chart("sent", "", series(5)).ticks] == ["0", "5"]


def test_funnel_widths_are_shares_of_the_widest_stage() -> None:
    stages = funnel([("対象", 10), ("送信", 5), ("クリック", 1), ("コンバージョン", 0)])
    assert [(s.label, s.value, s.width) for s in stages] == [
        ("対象", 10, 1.0), ("送信", 5, 0.5), ("クリック", 1, 0.1), ("コンバージョン", 0, 0.0)]
    assert [s.width for s in funnel([("対象", 0)])] == [0.0]

