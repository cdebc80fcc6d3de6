"""Lift over a holdout with a 95% interval: pure statistics, no I/O.

Method: the difference of two proportions (treated conversion rate − holdout
conversion rate) with Newcombe's hybrid score interval ("method 10", Newcombe
1998), built from each group's Wilson score interval. It keeps close to its
nominal coverage for small groups and rates near 0 — where the plain Wald
interval is too narrow — which is where a shop's holdout usually is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of one proportion."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Lift:
    treated_rate: float
    holdout_rate: float
    difference: float  # treated − holdout, in conversion-rate points (0.02 = 2 points)
    low: float  # 95% interval of the difference
    high: float
    method: str = "newcombe-wilson"


def lift(treated_conversions: int, treated: int, holdout_conversions: int, holdout: int, z: float = Z95) -> Lift | None:
    """None when a group is empty (no lift can be said)."""
    if treated <= 0 or holdout <= 0:
        return None
    p1, p2 = treated_conversions / treated, holdout_conversions / holdout
    l1, u1 = wilson(treated_conversions, treated, z)
    l2, u2 = wilson(holdout_conversions, holdout, z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Lift(p1, p2, difference, max(-1.0, low), min(1.0, high))
