"""GLUE metrics against values worked out by hand (not recomputed with the same libraries)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from dcft.metrics.glue import glue_metrics, predictions_from_logits


# --- CoLA: Matthews correlation ----------------------------------------------------------------
def test_matthews_2x2_confusion_matrix():
    # refs  1 1 1 0 0 0 1 0
    # preds 1 1 0 0 0 1 1 0
    # TP = 3 (pos 0,1,6), FN = 1 (pos 2), FP = 1 (pos 5), TN = 3 (pos 3,4,7)
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / sqrt(4*4*4*4) = 8/16
    out = glue_metrics("cola", [1, 1, 0, 0, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0, 1, 0])
    assert out == {"matthews_correlation": pytest.approx(0.5)}


def test_matthews_asymmetric_matrix():
    # refs 1 1 0 0, preds 1 1 1 0: TP = 2, FP = 1, TN = 1, FN = 0
    # MCC = (2*1 - 1*0) / sqrt(3 * 2 * 2 * 1) = 2 / sqrt(12) = 1 / sqrt(3)
    out = glue_metrics("cola", [1, 1, 1, 0], [1, 1, 0, 0])
    assert out["matthews_correlation"] == pytest.approx(1 / math.sqrt(3))


def test_matthews_perfect_inverse_and_constant():
    assert glue_metrics("cola", [1, 0, 1, 0], [1, 0, 1, 0])["matthews_correlation"] == pytest.approx(1.0)
    assert glue_metrics("cola", [0, 1, 0, 1], [1, 0, 1, 0])["matthews_correlation"] == pytest.approx(-1.0)
    # constant predictions: the denominator is 0; scikit-learn (and so the GLUE metric) gives 0.0
    assert glue_metrics("cola", [1, 1, 1, 1], [1, 0, 1, 0])["matthews_correlation"] == 0.0


# --- MRPC / QQP: accuracy and binary F1 of class 1 ---------------------------------------------
def test_accuracy_and_f1_of_class_1():
    # refs  1 1 1 0 0 0
    # preds 1 1 1 1 1 0 -> TP = 3, FP = 2, FN = 0, TN = 1
    # accuracy = (3 + 1) / 6 = 2/3; F1(class 1) = 2TP / (2TP + FP + FN) = 6 / 8 = 0.75
    # (F1 of class 0 would be 2*1 / (2*1 + 0 + 2) = 0.5: the metric must be the class-1 one)
    for task in ("mrpc", "qqp"):
        out = glue_metrics(task, [1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0])
        assert list(out) == ["accuracy", "f1"]
        assert out["accuracy"] == pytest.approx(2 / 3)
        assert out["f1"] == pytest.approx(0.75)


def test_f1_without_any_positive_is_zero():
    # no true and no predicted positive: precision and recall are 0/0; F1 is 0.0 (sklearn's rule)
    out = glue_metrics("mrpc", [0, 0, 0], [0, 0, 0])
    assert out == {"accuracy": 1.0, "f1": 0.0}


# --- accuracy tasks ---------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["sst2", "qnli", "rte", "mnli", "mnli_matched", "mnli_mismatched", "wnli"])
def test_accuracy_only(task):
    # 3 of 5 equal (positions 0, 1, 3)
    assert glue_metrics(task, [0, 1, 1, 0, 1], [0, 1, 0, 0, 0]) == {"accuracy": pytest.approx(0.6)}


def test_mnli_three_classes():
    # 3 of 4 equal (the last is neutral predicted as contradiction)
    assert glue_metrics("mnli", np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1])) == {"accuracy": 0.75}


# --- STS-B: Pearson and Spearman ---------------------------------------------------------------
def test_pearson_and_spearman_small():
    # x = 1 2 3 4, y = 1 3 2 4; both means 2.5
    # dx = -1.5 -0.5 0.5 1.5, dy = -1.5 0.5 -0.5 1.5
    # sum dx*dy = 2.25 - 0.25 - 0.25 + 2.25 = 4; sum dx^2 = sum dy^2 = 5 -> r = 4/5
    # the values are their own ranks, so Spearman = 0.8 too
    out = glue_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert list(out) == ["pearson", "spearmanr"]
    assert out["pearson"] == pytest.approx(0.8, abs=1e-6)
    assert out["spearmanr"] == pytest.approx(0.8, abs=1e-6)


def test_pearson_differs_from_spearman_on_monotone_outlier():
    # x = 1 2 3 4, y = 1 2 3 10: monotone, so Spearman = 1
    # Pearson: mean y = 4, dy = -3 -2 -1 6, dx = -1.5 -0.5 0.5 1.5
    # sum dx*dy = 4.5 + 1 - 0.5 + 9 = 14; sum dx^2 = 5; sum dy^2 = 50 -> r = 14 / sqrt(250)
    out = glue_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 10.0])
    assert out["pearson"] == pytest.approx(14 / math.sqrt(250), abs=1e-6)  # 0.885438
    assert out["spearmanr"] == pytest.approx(1.0, abs=1e-6)


def test_spearman_with_ties():
    # x = 1 2 2 3 -> ranks 1 2.5 2.5 4; y = 1 2 3 4 -> ranks 1 2 3 4; rank means 2.5
    # drx = -1.5 0 0 1.5, dry = -1.5 -0.5 0.5 1.5
    # sum = 2.25 + 2.25 = 4.5; sum drx^2 = 4.5; sum dry^2 = 5 -> rho = 4.5 / sqrt(22.5) = sqrt(0.9)
    out = glue_metrics("stsb", [1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    assert out["spearmanr"] == pytest.approx(math.sqrt(0.9), abs=1e-6)


def test_constant_input_correlation_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="undefined"):
        out = glue_metrics("stsb", [2.5, 2.5, 2.5], [1.0, 2.0, 3.0])
    assert math.isnan(out["pearson"]) and math.isnan(out["spearmanr"])
    with pytest.warns(RuntimeWarning):
        out = glue_metrics("stsb", [2.5], [1.0])  # a single pair
    assert math.isnan(out["pearson"])


def test_inputs_are_cast_to_float32():
    # 0.5, 0.5 + 1e-10, 0.5 + 2e-10 are distinct in float64 (r = 1 against 1 2 3) but one value
    # in float32, as the GLUE metric sees them: a constant prediction, so nan
    preds = np.array([0.5, 0.5 + 1e-10, 0.5 + 2e-10], dtype=np.float64)
    with pytest.warns(RuntimeWarning):
        out = glue_metrics("stsb", preds, [1.0, 2.0, 3.0])
    assert math.isnan(out["pearson"])


def test_no_warning_on_ordinary_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        glue_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 2.5, 2.0])
        glue_metrics("mrpc", [0, 0], [0, 0])
        glue_metrics("cola", [1, 1], [1, 0])


# --- input handling ----------------------------------------------------------------------------
def test_errors():
    with pytest.raises(ValueError, match="valid"):
        glue_metrics("squad", [1], [1])
    with pytest.raises(ValueError, match="2 predictions but 3 references"):
        glue_metrics("rte", [1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        glue_metrics("rte", [], [])


def test_task_name_spellings_and_tensors():
    assert glue_metrics("SST-2", torch.tensor([1, 0]), torch.tensor([1, 1])) == {"accuracy": 0.5}
    out = glue_metrics("STS-B", torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.bfloat16), [1.0, 3.0, 2.0, 4.0])
    assert out["pearson"] == pytest.approx(0.8, abs=1e-6)


def test_predictions_from_logits():
    cls = predictions_from_logits("rte", np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 0.5]]))
    assert cls.tolist() == [1, 0, 1] and cls.dtype == np.int64
    assert predictions_from_logits("mnli", torch.tensor([[0.0, 1.0, 3.0]])).tolist() == [2]
    reg = predictions_from_logits("stsb", np.array([[3.25], [1.5]], dtype=np.float32))
    assert reg.shape == (2,) and reg.tolist() == [3.25, 1.5]
    assert predictions_from_logits("stsb", np.array([[4.0]])).shape == (1,)  # n = 1 stays 1-D
    with pytest.raises(ValueError, match="regression"):
        predictions_from_logits("stsb", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="num_labels"):
        predictions_from_logits("rte", np.zeros(3))
    # end to end: logits -> predictions -> metrics
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])
    assert glue_metrics("cola", predictions_from_logits("cola", logits), [0, 1, 1, 0])["matthews_correlation"] == 1.0
