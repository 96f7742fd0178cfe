"""The intervals the uplift and segment-performance reports use, in plain numpy/scipy.

- A conversion rate: the Wilson score interval (good at small counts and rates near 0 or 1, never
  outside [0, 1], unlike the textbook normal interval).
- A difference of two rates: Newcombe's hybrid score interval ("method 10", Newcombe 1998), built
  from the two Wilson intervals; it keeps its coverage close to 95 % for small samples and rare
  conversions, where the normal (Wald) interval of the difference is too narrow.
- A difference of two means (revenue per visitor): Welch's t interval on the per-visitor values,
  with the Welch-Satterthwaite degrees of freedom (for the sample sizes these reports flag as
  large enough, the same as a normal approximation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as _stats

#: 95 % two-sided.
Z95 = float(_stats.norm.ppf(0.975))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def crosses_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """The Wilson score interval of successes / n ([0, 1] when n is 0)."""
    if n <= 0:
        return Interval(0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> Interval:
    """Newcombe's hybrid score interval of p1 - p2 (x1/n1 minus x2/n2)."""
    p1 = x1 / n1 if n1 else 0.0
    p2 = x2 / n2 if n2 else 0.0
    a, b = wilson(x1, n1, z), wilson(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2)
    high = d + math.sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2)
    return Interval(low, high)


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of per-visitor values (what SQL aggregates give)."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Sample variance (n - 1); 0 for fewer than two values."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.n * self.mean**2) / (self.n - 1))


def welch(a: Moments, b: Moments) -> Interval | None:
    """Welch's 95 % interval of mean(a) - mean(b); None when either side has fewer than 2 values."""
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.variance / a.n, b.variance / b.n
    d = a.mean - b.mean
    se2 = va + vb
    if se2 == 0:
        return Interval(d, d)
    df = se2**2 / ((va**2 / (a.n - 1) if va else 0.0) + (vb**2 / (b.n - 1) if vb else 0.0))
    t = float(_stats.t.ppf(0.975, df))
    half = t * math.sqrt(se2)
    return Interval(d - half, d + half)
