"""GLUE metrics, computed as the Hugging Face `glue` metric computes them (its script is on the Hub
and cannot be loaded offline, so it is restated here with the same scikit-learn / scipy calls):

- cola: `matthews_correlation` (`sklearn.metrics.matthews_corrcoef`);
- stsb: `pearson`, `spearmanr` (`scipy.stats.pearsonr` / `spearmanr` on float32-cast inputs);
- mrpc, qqp: `accuracy` and `f1` (binary F1 of class 1);
- sst2, mnli (and mnli_matched / mnli_mismatched), qnli, rte, wnli: `accuracy`.

Values are fractions in [0, 1] (or [-1, 1] for correlations), as the HF metric returns; tables ×100.

Degenerate input does not crash: MCC of constant predictions is 0.0 (as scikit-learn returns);
F1 with no predicted and no true positives is 0.0; a correlation of a constant input (or of fewer
than 2 pairs) is undefined and returned as `float("nan")`, with a `RuntimeWarning` -- never a made-up
0.0, so a collapsed regression head is visible in the results rather than scored as "no correlation".
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_ACCURACY_TASKS = ("sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli")
_ACC_F1_TASKS = ("mrpc", "qqp")
METRIC_TASKS = ("cola", "stsb") + _ACC_F1_TASKS + _ACCURACY_TASKS
REGRESSION_TASKS = ("stsb",)


def _task_key(task: str) -> str:
    key = task.lower().replace("-", "")
    if key not in METRIC_TASKS:
        raise ValueError(f"no GLUE metric for task {task!r}; valid: {', '.join(METRIC_TASKS)}")
    return key


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (any dtype, any device)
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _correlation(fn, name: str, preds: np.ndarray, refs: np.ndarray) -> float:
    if len(preds) < 2 or np.all(preds == preds[0]) or np.all(refs == refs[0]):
        warnings.warn(f"{name} correlation is undefined for a constant input or fewer than 2 pairs "
                      f"(n={len(preds)}); returning nan", RuntimeWarning, stacklevel=3)
        return float("nan")
    return float(fn(preds, refs)[0])


def glue_metrics(task: str, predictions: Any, references: Any) -> dict[str, float]:
    """The GLUE metrics of one task: {metric name: value}; `predictions` are class ids (float
    scores for stsb), `references` the gold labels, in the same order."""
    key = _task_key(task)
    preds, refs = _to_numpy(predictions).reshape(-1), _to_numpy(references).reshape(-1)
    if len(preds) != len(refs):
        raise ValueError(f"{task}: {len(preds)} predictions but {len(refs)} references")
    if len(preds) == 0:
        raise ValueError(f"{task}: no predictions to score")
    if key == "stsb":
        preds, refs = preds.astype(np.float32), refs.astype(np.float32)
        return {"pearson": _correlation(pearsonr, "pearson", preds, refs),
                "spearmanr": _correlation(spearmanr, "spearman", preds, refs)}
    if key == "cola":
        return {"matthews_correlation": float(matthews_corrcoef(refs, preds))}
    accuracy = float((preds == refs).mean())
    if key in _ACC_F1_TASKS:
        return {"accuracy": accuracy, "f1": float(f1_score(refs, preds, zero_division=0.0))}
    return {"accuracy": accuracy}


def predictions_from_logits(task: str, logits: Any) -> np.ndarray:
    """Predictions from model logits of shape (n, num_labels): the argmax class ids (int64), or for
    the regression task (stsb) the scores as a 1-D float array of length n."""
    key = _task_key(task)
    x = _to_numpy(logits)
    if key in REGRESSION_TASKS:
        if not (x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1)):
            raise ValueError(f"{task} is a regression task: logits must be (n,) or (n, 1), got {x.shape}")
        return x.reshape(-1)
    if x.ndim != 2:
        raise ValueError(f"{task}: classification logits must be (n, num_labels), got shape {x.shape}")
    return x.argmax(axis=-1).astype(np.int64)
