"""The 1-2-3-5-8 learning-rate ladder (..., 1e-4, 2e-4, 3e-4, 5e-4, 8e-4, 1e-3, ...) that every
learning-rate grid of this project is drawn from: `scripts/method_hp.py` (the paper tables: a task's
source rate and one step either side) and the studies (`dcft.study.planner`: a study file's `tuning.step` places apart)."""

from __future__ import annotations

import math

LADDER_MANTISSAS = (1, 2, 3, 5, 8)


def clean(x: float) -> float:
    """`x` to 3 significant digits (8.000000000000001e-04 -> 8e-04)."""
    return float(f"{x:.3g}")


def ladder_step(lr: float, steps: int) -> float:
    """The value `steps` places above (> 0) or below (< 0) `lr` on the ladder; `lr` need not be on it."""
    if steps == 0:
        return clean(lr)
    e = math.floor(math.log10(lr))
    span = abs(steps) // len(LADDER_MANTISSAS) + 2
    values = sorted(clean(m * 10.0 ** k) for k in range(e - span, e + span + 1) for m in LADDER_MANTISSAS)
    if steps > 0:
        return [v for v in values if v > lr * (1 + 1e-9)][steps - 1]
    return [v for v in values if v < lr * (1 - 1e-9)][steps]
