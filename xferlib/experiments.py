"""One experiment protocol: paired results over seeds, a difference with its 95 % interval,
and claims that hold only when the interval says so.

A lesson runs each contender on the same seeds (the same data split, the same initial head),
so the results pair up seed by seed. :func:`compare` turns two such lists into the mean
difference ``a - b`` with a confidence interval; :func:`claim` asserts a direction and fails,
with the numbers, when the interval does not exclude zero that way::

    ft, fe = [0.81, 0.78, 0.84, 0.80, 0.83], [0.76, 0.75, 0.79, 0.77, 0.78]   # one per seed
    xl.claim("fine-tuning beats feature extraction here",
             xl.compare(ft, fe, names=("fine-tuning", "feature extraction")), smoke=SMOKE)
    # holds: fine-tuning − feature extraction: +4.2 points, 95 % CI [+2.5, +5.9], 5 seeds

The interval is the paired t interval: the differences' mean plus or minus ``t * sd / sqrt(n)``
with ``n - 1`` degrees of freedom. With the five to ten seeds a lesson can afford, a bootstrap
interval is too narrow (it cannot see the tails of so few values); the t interval keeps its
95 % (``tests/test_experiments.py`` checks both error rates on synthetic data). Used by every
lesson that states a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

DIRECTIONS = ("greater", "less", "neither")


@dataclass(frozen=True)
class Comparison:
    """The paired difference ``a - b`` over ``n`` seeds: ``mean`` and its interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    n: int
    names: tuple[str, str] = ("a", "b")
    level: float = 0.95
    percent: bool = True  # values are proportions: shown in percentage points
    differences: tuple[float, ...] = ()

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def holds(self, direction: str = "greater") -> bool:
        """True when the interval lies wholly above zero (``greater``), wholly below it (``less``),
        or contains it (``neither``: no difference detectable)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if direction == "neither":
            return not self.excludes_zero
        return self.low > 0 if direction == "greater" else self.high < 0

    def _fmt(self, value: float) -> str:
        return f"{value * 100:+.1f}" if self.percent else f"{value:+.3g}"

    def __str__(self) -> str:
        unit = " points" if self.percent else ""
        return (f"{self.names[0]} − {self.names[1]}: {self._fmt(self.mean)}{unit}, "
                f"{self.level * 100:.0f} % CI [{self._fmt(self.low)}, {self._fmt(self.high)}], {self.n} seeds")

    def _repr_pretty_(self, printer, cycle):  # IPython shows the sentence
        printer.text(str(self))


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            raise TypeError("pass both results as lists (paired by position) or both as dicts (paired by seed)")
        if set(a) != set(b):
            raise ValueError(f"the two contenders ran on different seeds: {sorted(set(a) ^ set(b), key=str)} are not in both")
        keys = sorted(a, key=str)
        a, b = [a[k] for k in keys], [b[k] for k in keys]
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(a) != len(b):
        raise ValueError(f"paired results need one value per seed from each contender: got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a result is NaN or infinite; check the run that produced it")
    return a, b


def compare(a: Sequence[float] | Mapping, b: Sequence[float] | Mapping, names: tuple[str, str] = ("a", "b"),
            level: float = 0.95, percent: bool | None = None) -> Comparison:
    """The mean of the paired differences ``a - b`` with its ``level`` t interval.

    ``a`` and ``b`` hold one result per seed, paired by position (lists) or by seed (dicts).
    ``percent`` shows proportions as percentage points (default: when every value is in [0, 1]).
    """
    a, b = _paired(a, b)
    n = len(a)
    if n < 2:
        raise ValueError(f"an interval needs at least 2 seeds per contender, got {n}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    from scipy import stats

    d = a - b
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    if percent is None:
        percent = bool(((a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)).all())
    return Comparison(mean, mean - half, mean + half, n, tuple(names), level, percent, tuple(d.tolist()))


def mean_interval(values: Sequence[float] | Mapping, level: float = 0.95, digits: int = 3) -> str:
    """``values``' mean ± the half-width of its ``level`` t interval, as text ("0.733 ± 0.042"): one
    contender's results over seeds or episodes (lessons 10 and 13; ``accuracy_spread`` gives the spread)."""
    v = list(values.values()) if isinstance(values, Mapping) else list(np.asarray(values, dtype=float).ravel())
    c = compare(v, [0.0] * len(v), level=level, percent=False)
    return f"{c.mean:.{digits}f} ± {c.high - c.mean:.{digits}f}"


class ClaimFailed(AssertionError):
    """A lesson's claim that its own numbers do not support."""


def claim(statement: str, comparison: Comparison, direction: str = "greater", smoke: bool = False) -> Comparison:
    """Assert that ``comparison``'s interval excludes zero in ``direction`` (``a`` greater than
    ``b`` by default, or ``less``); print a one-line verdict when it holds, raise
    :class:`ClaimFailed` with the numbers when it does not. ``direction="neither"`` guards a
    sentence that says "no difference detectable at this scale": it fails once the interval
    excludes zero, so the text must change. With ``smoke=True`` (tiny runs) report without asserting."""
    held = comparison.holds(direction)
    if held:
        verdict = "no difference detectable" if direction == "neither" else "holds"
        print(f"✔ {verdict}: {statement} ({comparison})")
    elif smoke:
        print(f"· smoke run, not checked: {statement} ({comparison})")
    elif direction == "neither":
        raise ClaimFailed(
            f"Not supported: {statement!r} was written as 'no difference detectable', but {comparison}: "
            "the interval now excludes zero. Name the winner in the text instead."
        )
    else:
        side = "above" if direction == "greater" else "below"
        raise ClaimFailed(
            f"Not supported: {statement!r}. {comparison}: the interval does not lie wholly {side} zero. "
            "Say 'no difference detectable at this scale' (or run more seeds) instead of naming a winner."
        )
    return comparison
