"""The claims table (`dcft.study.report.claim_rows`): verdicts and intervals against values worked out
here with scipy.stats' t distribution, on result files written by the test.

One budget (1000 steps) on SST-2; DCFT k8 selected at 8e-4, LoRA at 3e-4 (each the best held-out score
of its grid's seed-6 runs); DCFT k4 at DCFT k8's rate. Dev x100 by seed 6, 7, 8:
DCFT k8 85.0, 86.0, 87.5; LoRA 85.5, 85.5, 86.0; DCFT k4 80.0, 81.0, 81.5."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from study_fixtures import STUDY, result, write_study
from dcft.study.planner import Decisions
from dcft.study.report import claim_rows
from dcft.study.spec import load
from dcft.report.tables import load_runs

DEV = {"dcft8": (85.0, 86.0, 87.5), "lora": (85.5, 85.5, 86.0), "dcft4": (80.0, 81.0, 81.5)}
CLAIMS = [{"name": "k8_vs_lora", "kind": "as_good_as", "settings": ["dcft8", "lora"], "tasks": ["sst2"]},
          {"name": "k8_over_lora", "kind": "better", "settings": ["dcft8", "lora"], "tasks": ["sst2"]},
          {"name": "k8_over_k4", "kind": "better", "settings": ["dcft8", "dcft4"], "group": "kernel", "tasks": ["sst2"]},
          {"name": "chain", "kind": "ordering", "settings": ["dcft8", "lora", "dcft4"], "tasks": ["sst2"]},
          {"name": "qv", "kind": "better", "settings": ["dcft8", "lora_qv"], "tasks": ["sst2"]}]


def study(tmp, margin, seeds=(6, 7, 8), k4=True):
    tasks = {"sst2": {**STUDY["tasks"]["sst2"], "budgets": [1000]}}
    write_study(tmp, tasks=tasks, claims=CLAIMS, margins={"sst2": margin})
    root = tmp / "runs"
    if not (root / "minilm").exists():
        for lr, h in ((1e-4, 0.80), (3e-4, 0.86), (8e-4, 0.84)):
            result(root, "lora", 1000, lr, 6, h, DEV["lora"][0] / 100 if lr == 3e-4 else 0.5)
        for lr, h in ((3e-4, 0.85), (8e-4, 0.90), (2e-3, 0.88)):
            result(root, "dcft8", 1000, lr, 6, h, DEV["dcft8"][0] / 100 if lr == 8e-4 else 0.5)
        for i, seed in enumerate(seeds):
            if seed != 6:
                result(root, "lora", 1000, 3e-4, seed, 0.5, DEV["lora"][i] / 100)
                result(root, "dcft8", 1000, 8e-4, seed, 0.5, DEV["dcft8"][i] / 100)
            if k4:
                result(root, "dcft4", 1000, 8e-4, seed, 0.5, DEV["dcft4"][i] / 100)
    s = load(tmp / "study.yaml")
    return {r[0]: r for r in claim_rows(Decisions(s, load_runs(root).usable))}


def interval(diffs, level):
    n = len(diffs)
    m = sum(diffs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in diffs) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return m, m - half, m + half, sd / math.sqrt(n)


def fmt(lo, hi):
    return f"[{lo:+.2f}, {hi:+.2f}]"


def test_verdicts_against_intervals_worked_with_scipy(tmp_path):
    rows = study(tmp_path, margin=1.0)
    d = [a - b for a, b in zip(DEV["dcft8"], DEV["lora"])]  # -0.5, +0.5, +1.5: mean 0.5, sd 1
    m, lo, hi, se = interval(d, 0.95)
    _, lo90, hi90, _ = interval(d, 0.90)
    tost = max(stats.t.sf((m + 1.0) / se, 2), stats.t.sf((1.0 - m) / se, 2))
    r = rows["k8_vs_lora"]
    assert r[6:12] == [f"{m:+.2f}", fmt(lo, hi), fmt(lo90, hi90), "1", f"{tost:.3f}", "inconclusive"]
    assert lo90 < -1.0  # the 90 % interval reaches past the margin: not equivalent, not beyond it either
    assert rows["k8_over_lora"][7:] == [fmt(lo, hi), "", "", "", "inconclusive"]  # contains 0: never supported
    d4 = [a - b for a, b in zip(DEV["dcft8"], DEV["dcft4"])]  # 5, 5, 6
    m4, lo4, hi4, _ = interval(d4, 0.95)
    assert lo4 > 0 and rows["k8_over_k4"][6:8] == [f"{m4:+.2f}", fmt(lo4, hi4)]
    assert rows["k8_over_k4"][-1] == "supported"
    dl4 = [a - b for a, b in zip(DEV["lora"], DEV["dcft4"])]  # 5.5, 4.5, 4.5: LoRA > DCFT k4 beyond noise
    ml4, lol4, hil4, _ = interval(dl4, 0.95)
    assert rows["chain"][7] == f"{fmt(lo, hi)}; {fmt(lol4, hil4)}" and rows["chain"][-1] == "inconclusive"
    assert rows["qv"][-1] == "not run yet"  # LoRA qv has no run


def test_a_wide_enough_margin_makes_equivalence_supported(tmp_path):
    rows = study(tmp_path, margin=3.0)
    _, lo90, hi90, _ = interval([a - b for a, b in zip(DEV["dcft8"], DEV["lora"])], 0.90)
    assert -3.0 < lo90 and hi90 < 3.0
    assert rows["k8_vs_lora"][-1] == "supported"


def test_fewer_seeds_than_the_study_has_give_no_verdict(tmp_path):
    rows = study(tmp_path, margin=3.0, seeds=(6, 7))
    assert rows["k8_vs_lora"][5] == "2 / 2" and rows["k8_vs_lora"][-1] == "running (n=2 of 3)"
