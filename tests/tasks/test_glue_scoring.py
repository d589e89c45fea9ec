"""Every GLUE task's scoring path as the loop runs it: gathered logits and labels of each evaluation
set through `GlueTask.compute_metrics`, then `GlueTask.score` (the number the best checkpoint is
chosen by). Expected values are computed by hand in this file (confusion counts, Pearson and
Spearman written out), never by the metric code.

The paper's main metrics (Table 1): CoLA Matthews correlation, STS-B Pearson (a regression head,
one logit), MNLI matched accuracy (mismatched reported beside it), accuracy elsewhere; MRPC and QQP
also report F1 of the positive class.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dcft.tasks.glue import GlueTask


def logits_for(preds: list[int], num_labels: int = 2) -> np.ndarray:
    """Logits whose argmax is `preds` (the winning class gets 2.0, the others 0..1)."""
    x = np.tile(np.linspace(0.0, 1.0, num_labels), (len(preds), 1)).astype(np.float32)
    x[np.arange(len(preds)), preds] = 2.0
    return x


def metrics_of(task: GlueTask, sets: dict[str, tuple[np.ndarray, list]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, (logits, labels) in sets.items():
        out.update(task.compute_metrics(name, {"logits": logits, "labels": np.asarray(labels)}, data=None))
    return out


def test_mnli_matched_is_the_score_and_mismatched_is_reported():
    task = GlueTask("mnli")
    assert task.num_labels == 3
    matched = (logits_for([0, 1, 2, 2], 3), [0, 1, 2, 0])  # 3 of 4 right
    mismatched = (logits_for([0, 0, 1, 2], 3), [1, 0, 1, 0])  # 2 of 4 right
    m = metrics_of(task, {"validation_matched": matched, "validation_mismatched": mismatched})
    assert m == {"validation_matched/accuracy": 0.75, "validation_mismatched/accuracy": 0.5}
    assert task.score(m) == 0.75


def pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return sxy / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def test_stsb_regression_logits_pearson_is_the_score():
    task = GlueTask("stsb")
    assert task.num_labels == 1  # a regression head: one logit per example
    preds = [0.1, 0.4, 0.35, 0.8, 0.9]
    labels = [1.0, 2.0, 3.0, 4.0, 5.0]
    m = metrics_of(task, {"validation": (np.asarray(preds, dtype=np.float32)[:, None], labels)})
    # Spearman: ranks of preds (1, 3, 2, 4, 5) vs (1..5): 1 - 6 * (1 + 1) / (5 * 24) = 0.9
    assert set(m) == {"validation/pearson", "validation/spearmanr"}
    assert m["validation/pearson"] == pytest.approx(pearson(preds, labels), abs=1e-6)
    assert m["validation/spearmanr"] == pytest.approx(0.9, abs=1e-12)
    assert task.score(m) == m["validation/pearson"]
    assert m["validation/pearson"] != pytest.approx(0.9, abs=1e-3)  # the two metrics are told apart


@pytest.mark.parametrize("name", ["mrpc", "qqp"])
def test_mrpc_qqp_accuracy_and_f1(name):
    task = GlueTask(name)
    # labels 1 1 1 1 0 0 vs preds 1 1 1 0 1 1: TP 3, FN 1, FP 2, TN 0 -> accuracy 3/6, F1 2*3/(2*3+1+2) = 2/3
    m = metrics_of(task, {"validation": (logits_for([1, 1, 1, 0, 1, 1]), [1, 1, 1, 1, 0, 0])})
    assert m == {"validation/accuracy": 0.5, "validation/f1": pytest.approx(2 / 3, abs=1e-12)}
    assert task.score(m) == 0.5  # the paper's MRPC / QQP column is accuracy


def test_cola_matthews_is_the_score():
    task = GlueTask("cola")
    # labels 1 1 1 0 0 vs preds 1 1 0 0 1: TP 2, TN 1, FP 1, FN 1 -> (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    m = metrics_of(task, {"validation": (logits_for([1, 1, 0, 0, 1]), [1, 1, 1, 0, 0])})
    assert m == {"validation/matthews_correlation": pytest.approx(1 / 6, abs=1e-12)}
    assert task.score(m) == pytest.approx(1 / 6, abs=1e-12)


@pytest.mark.parametrize("name", ["sst2", "qnli", "rte"])
def test_accuracy_tasks(name):
    task = GlueTask(name)
    m = metrics_of(task, {"validation": (logits_for([0, 1, 1, 0, 1]), [0, 1, 0, 0, 0])})  # 3 of 5 right
    assert m == {"validation/accuracy": pytest.approx(0.6, abs=1e-12)}
    assert task.score(m) == pytest.approx(0.6, abs=1e-12)
