"""Claims and their verdicts: the words a study may use, decided by intervals fixed before the runs.

A study states each claim before any run, as a pair (or chain) of settings and a kind; the verdict is
then read off the paired per-seed differences (a - b on the seeds both settings have), never chosen
after seeing them. Three kinds, three words each ("supported", "not supported", "inconclusive"):

* ``better`` (a > b): *supported* when the two-sided 95 % t-interval of the mean paired difference lies
  above 0; *not supported* when it lies below 0 (b is better beyond seed noise); otherwise
  *inconclusive*. A non-significant difference is never "supported", whatever its sign.
* ``as_good_as`` (a is within `margin` of b, the margin in score points fixed before the runs):
  two one-sided t-tests (TOST) at level alpha = 0.05, i.e. the 90 % t-interval of the mean difference
  lies inside (-margin, +margin): *supported*; *not supported* when the 95 % interval lies entirely
  outside the margin on one side (a is worse, or better, than b by more than the margin, beyond
  noise); otherwise *inconclusive*.
* ``ordering`` (s1 > s2 > ... > sk): each adjacent pair as ``better``; *supported* when every pair is,
  *not supported* when any pair is reversed beyond noise, otherwise *inconclusive*.

With fewer than two paired seeds there is no interval: the verdict is *inconclusive* (n < 2).

Written in-house: the verdict rule is this project's reporting convention; the t quantiles come from
scipy.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
KINDS = ("better", "as_good_as", "ordering")


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Paired:
    """Per-seed differences a - b and their summary; `interval(level)` is the two-sided t-interval."""

    seeds: tuple[int, ...]
    diffs: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.diffs) if self.diffs else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.diffs) if self.n > 1 else math.nan

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        if self.n < 2:
            return math.nan, math.nan
        half = t_quantile(0.5 + level / 2, self.n - 1) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Paired:
    """a - b over the seeds both settings have (seed -> score)."""
    seeds = tuple(sorted(set(a) & set(b)))
    return Paired(seeds, tuple(float(a[s]) - float(b[s]) for s in seeds))


@dataclass(frozen=True)
class Claim:
    """A claim fixed before the runs: `settings` is (a, b) for better/as_good_as, a chain for ordering."""

    name: str
    kind: str
    settings: tuple[str, ...]
    margin: float | None = None  # as_good_as: equivalence margin in score points (x100)
    task: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.name!r}: kind={self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind != "ordering" and len(self.settings) != 2:
            raise ValueError(f"claim {self.name!r}: kind={self.kind} takes two settings, got {list(self.settings)}")
        if self.kind == "ordering" and len(self.settings) < 2:
            raise ValueError(f"claim {self.name!r}: an ordering needs at least two settings")
        if self.kind == "as_good_as" and not (self.margin is not None and self.margin > 0):
            raise ValueError(f"claim {self.name!r}: as_good_as needs margin > 0 (score points), got {self.margin!r}")


def better(p: Paired) -> str:
    """a > b: the 95 % interval of the paired mean excludes 0 on the claimed side."""
    lo, hi = p.interval(0.95)
    if p.n < 2:
        return INCONCLUSIVE
    if lo > 0:
        return SUPPORTED
    if hi < 0:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def as_good_as(p: Paired, margin: float, alpha: float = 0.05) -> str:
    """|a - b| < margin by two one-sided tests at `alpha` (the 1 - 2 alpha interval inside the margin)."""
    if p.n < 2:
        return INCONCLUSIVE
    lo, hi = p.interval(1 - 2 * alpha)
    if -margin < lo and hi < margin:
        return SUPPORTED
    lo95, hi95 = p.interval(0.95)
    if hi95 < -margin or lo95 > margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def tost_p(p: Paired, margin: float) -> float:
    """The TOST p-value: the larger of the two one-sided p-values (equivalence when below alpha)."""
    from scipy.stats import t

    if p.n < 2:
        return math.nan
    se = p.std / math.sqrt(p.n)
    lower = t.sf((p.mean + margin) / se, p.n - 1)  # H0: mean <= -margin
    upper = t.sf((margin - p.mean) / se, p.n - 1)  # H0: mean >= +margin
    return float(max(lower, upper))


def ordering(pairs: Sequence[Paired]) -> str:
    """s1 > s2 > ...: every adjacent pair `better`; one reversed beyond noise makes it not supported."""
    words = [better(p) for p in pairs]
    if words and all(w == SUPPORTED for w in words):
        return SUPPORTED
    if NOT_SUPPORTED in words:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def verdict(claim: Claim, cells: Mapping[str, Mapping[int, float]]) -> tuple[str, list[Paired]]:
    """The claim's word and the paired differences it was read from (`cells`: setting -> seed -> score)."""
    missing = [s for s in claim.settings if s not in cells]
    if missing:
        raise KeyError(f"claim {claim.name!r}: no cell for {', '.join(missing)}")
    chain = [paired(cells[a], cells[b]) for a, b in zip(claim.settings, claim.settings[1:])]
    if claim.kind == "better":
        return better(chain[0]), chain
    if claim.kind == "as_good_as":
        return as_good_as(chain[0], float(claim.margin)), chain
    return ordering(chain), chain
