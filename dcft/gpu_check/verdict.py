"""Verdict rows of the GPU check and the table they make: one row per check, with what passes, what
was measured and the outcome.

Outcomes: `pass`; `fail` (the harness computes something wrong: the check exits non-zero);
`missed` (a speed or memory target is not met: the numbers are right but slower than the target);
`info` (a measurement with nothing to pass, e.g. a step time beside the CPU's); `skipped` (the
check cannot run here, with the reason, e.g. a second GPU for data parallelism).
"""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

OUTCOMES = ("pass", "fail", "missed", "info", "skipped")


@dataclass
class Verdict:
    """One row of the verdict table."""

    section: str  # environment, kernels, tuner, merge, bench, training, data parallel
    check: str  # what is checked
    expected: str  # what passes (with the tolerance or target)
    measured: str  # what was measured
    outcome: str  # one of OUTCOMES
    detail: str = ""  # why a check failed or was skipped

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome={self.outcome!r}; valid: {', '.join(OUTCOMES)}")


def within(section: str, check: str, value: float, limit: float, expected: str, measured: str,
           target: bool = False) -> Verdict:
    """`pass` when value <= limit (NaN never passes), else `fail`, or `missed` for a speed or
    memory `target`."""
    ok = value <= limit  # False for NaN
    return Verdict(section, check, expected, measured, "pass" if ok else ("missed" if target else "fail"))


def guarded(section: str, check: str, fn: Callable[[], list[Verdict]]) -> list[Verdict]:
    """The rows `fn` returns, or one `fail` row naming the exception it raised (so one broken check
    never hides the others). An out-of-memory error says how to make the check smaller."""
    try:
        return fn()
    except (Exception, SystemExit) as e:  # noqa: BLE001 - every failure (a library's argument check too) becomes a row
        text = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        hint = " (out of memory: rerun with a smaller --bench-batch or --bench-seq-len)" if "out of memory" in text.lower() else ""
        return [Verdict(section, check, "runs", "error", "fail", text + hint + "\n" + traceback.format_exc(limit=3))]


def to_records(verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in verdicts]


def from_records(records: Iterable[dict[str, Any]]) -> list[Verdict]:
    return [Verdict(**r) for r in records]


def counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    verdicts = list(verdicts)
    return {o: sum(v.outcome == o for v in verdicts) for o in OUTCOMES}


def headline(verdicts: Iterable[Verdict]) -> str:
    """One line: right (no `fail`) and fast (no `missed`), with the counts."""
    c = counts(verdicts)
    right = "RIGHT: every correctness check passed" if c["fail"] == 0 else f"WRONG: {c['fail']} check(s) failed"
    fast = ("fast: every speed and memory target met" if c["missed"] == 0
            else f"{c['missed']} speed or memory target(s) missed")
    tally = ", ".join(f"{n} {o}" for o, n in c.items() if n)
    return f"{right}; {fast} ({tally})"


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """1 when any check failed, else 0 (a missed speed target does not fail the check)."""
    return 1 if counts(verdicts)["fail"] else 0


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(verdicts: Iterable[Verdict]) -> str:
    """The verdict table: section, check, expected, measured, outcome (the first line of a detail
    follows the outcome)."""
    lines = ["| section | check | expected | measured | outcome |", "|---|---|---|---|---|"]
    for v in verdicts:
        outcome = v.outcome.upper() if v.outcome in ("fail", "missed") else v.outcome
        if v.detail:
            outcome += f": {v.detail.splitlines()[0]}"
        lines.append(f"| {_cell(v.section)} | {_cell(v.check)} | {_cell(v.expected)} | {_cell(v.measured)} | "
                     f"{_cell(outcome)} |")
    return "\n".join(lines)
