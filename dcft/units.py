"""How a person reads a score: one unit everywhere (x100, as the paper's tables) and the set named.

Result files and `log.jsonl` keep the metrics' own scale (GLUE fractions in [0, 1] or correlations
in [-1, 1], SQuAD's EM / F1 already in [0, 100]); everything printed for a person (progress bar,
heartbeat, run summary, `python -m dcft.report.results`, tables, TensorBoard's evaluation curves) shows
`score_scale(task) x value`, with the evaluation set named: "dev" (the task's dev set, MNLI's
matched / mismatched) or "held-out" (the slice of the training set `data.holdout` sets aside).
"""

from __future__ import annotations

from typing import Any

SET_NAMES = {"validation": "dev", "validation_matched": "dev-m", "validation_mismatched": "dev-mm",
             "holdout": "held-out"}
METRIC_NAMES = {"accuracy": "acc", "matthews_correlation": "mcc", "pearson": "pearson", "spearmanr": "spearman",
                "f1": "F1", "exact_match": "EM", "exact": "EM", "best_f1": "best F1", "best_exact": "best EM"}
# SQuAD v2 keys that are counts or thresholds, never scaled (the rest of SQuAD is already x100)
_NOT_SCORES = ("total", "thresh")


def score_scale(task: Any) -> float:
    """x100 for GLUE (fractions, correlations), 1 for SQuAD (its EM / F1 are already x100)."""
    return 1.0 if str(task).startswith("squad") else 100.0


def is_score_key(key: str) -> bool:
    """Whether a metrics key (`<set>/<metric>`) is a score a person reads (not a count or threshold)."""
    return not any(k in key.rpartition("/")[2] for k in _NOT_SCORES)


def set_name(split: str) -> str:
    """"dev", "dev-m", "dev-mm" or "held-out" for an evaluation set's key."""
    return SET_NAMES.get(split, split)


def key_name(key: str) -> str:
    """A metrics key as a person reads it: "validation/accuracy" -> "dev acc"."""
    split, _, metric = key.rpartition("/")
    return f"{set_name(split)} {METRIC_NAMES.get(metric, metric)}".strip()


def shown(task: Any, key: str, value: Any, digits: int = 2) -> str:
    """One metric as printed: "dev acc 52.71" (x100 for GLUE), "-" for a missing value."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        return f"{key_name(key)} -"
    scale = score_scale(task) if is_score_key(key) else 1.0
    return f"{key_name(key)} {value * scale:.{digits}f}"


def progress_text(task: Any, key: str, score: float, best: float, best_step: Any) -> str:
    """The latest evaluation for a progress bar or heartbeat: "dev acc 47.79 (best 50.00 @ 100)"."""
    best_text = f"{best * score_scale(task):.2f} @ {best_step}" if best == best and best_step is not None else "-"
    return f"{shown(task, key, score)} (best {best_text})"
