"""Charts as geometry, computed on the server and drawn as inline SVG by the templates (no script, no CDN).

Pure functions over the report's numbers: a daily bar chart (one bar per day
with a value above zero, scaled to a "nice" maximum) and a funnel (one bar per
stage, scaled to the stage with the most). The templates only place what these
return, so what a chart shows is tested here, table by table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 480
HEIGHT = 200
LEFT = 52  # room for the value axis labels
RIGHT = 8
TOP = 10
BOTTOM = 26  # room for the day labels
MAX_DAY_LABELS = 6
BAR_SHARE = 0.72  # of a day's slot; the rest is the gap between bars


def compact(value: float) -> str:
    """A number short enough for an axis label, the Japanese way (万 = 10⁴, 億 = 10⁸)."""
    if value >= 100_000_000:
        return f"{value / 100_000_000:.3g}億"
    if value >= 10_000:
        return f"{value / 10_000:.3g}万"
    return f"{int(value):,}"


def nice_ceiling(value: float) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at or above `value` (at least 1): a round top for the value axis."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    value: int
    title: str  # the bar's tooltip: day and value as the merchant reads them


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class DayLabel:
    x: float
    label: str


@dataclass(frozen=True)
class DailyChart:
    metric: str
    title: str
    bars: list[Bar]
    ticks: list[Tick]
    day_labels: list[DayLabel]
    total: int
    days: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return self.total == 0


def daily_chart(metric: str, title: str, series: Sequence[tuple[date, int]],
                fmt: Callable[[int], str] = lambda v: f"{v:,}") -> DailyChart:
    """Bars for the days with a value above zero; a day of zero draws nothing (its slot stays empty)."""
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slots = max(1, len(series))
    slot = plot_width / slots
    top_value = nice_ceiling(max((value for _, value in series), default=0))
    bars = []
    for index, (day, value) in enumerate(series):
        if value <= 0:
            continue
        height = max(1.0, plot_height * value / top_value)  # never thinner than a line: data must show
        x = LEFT + index * slot + slot * (1 - BAR_SHARE) / 2
        bars.append(Bar(round(x, 2), round(TOP + plot_height - height, 2), round(max(slot * BAR_SHARE, 0.8), 2),
                        round(height, 2), day, value, f"{day.month}/{day.day}: {fmt(value)}"))
    shares = (0, 0.5, 1) if top_value % 2 == 0 else (0, 1)  # a middle line only where it is a whole number
    ticks = [Tick(round(TOP + plot_height * (1 - share), 2), compact(top_value * share)) for share in shares]
    every = max(1, math.ceil(slots / MAX_DAY_LABELS))
    labels = [DayLabel(round(LEFT + (index + 0.5) * slot, 2), f"{day.month}/{day.day}")
              for index, (day, _) in enumerate(series) if index % every == 0]
    return DailyChart(metric, title, bars, ticks, labels, sum(value for _, value in series), len(series))


@dataclass(frozen=True)
class Stage:
    label: str
    value: int
    width: float  # share of the widest stage, 0–1
    text: str


def funnel(stages: Sequence[tuple[str, int]], fmt: Callable[[int], str] = lambda v: f"{v:,}") -> list[Stage]:
    """One bar per stage (targeted → sent → clicked → converted), each as a share of the largest."""
    widest = max((value for _, value in stages), default=0)
    return [Stage(label, value, (value / widest) if widest else 0.0, fmt(value)) for label, value in stages]
