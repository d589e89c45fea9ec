"""`python -m dcft.report.results`: the compact comparison (filters, grouping over seeds, mean ± std, n,
#Params, steps, time, CSV) and `load_tidy` (the problem: "load_all() returns 184 columns and there is
no compact comparison"). Fixture result files with hand-chosen numbers; expected values by hand."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from dcft.report import results as R


def _write(root: Path, task: str, method: str, seed: int, score: float, *, kernel=None, stride=None, r=None,
           status="completed", debug=None, params=1000, steps=40, time_s=60.0) -> None:
    mcfg = {"name": method}
    if method == "dcft":
        mcfg.update(kernel=kernel, stride=stride, targets="all", rank=1, r=2.0)
    if method == "lora":
        mcfg.update(r=r, targets="all")
    d = root / "m" / task / method / f"{kernel}-{stride}-{r}-{seed}-{status}-{debug}"
    d.mkdir(parents=True)
    rec = {"status": status, "choices": {"preset": "cpu", "debug": debug},
           "config": {"model": {"name": "minilm"}, "task": {"name": task}, "method": mcfg, "seed": seed,
                      "train": {"lr": 1e-3, "batch_size": 16}},
           "params": {"method": params, "head": 10, "total": 99},
           "train": {"steps": steps, "epochs": 1, "train_time_s": time_s}}
    if status == "completed":
        rec["metrics"] = {"best": {"score": score, "step": steps}, "final": {"score": score}}
    else:
        rec["error"] = {"type": "ValueError", "message": "boom"}
    (d / "result.json").write_text(json.dumps(rec))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, score, t in ((1, 0.60, 60.0), (2, 0.70, 120.0), (3, 0.80, 180.0)):
        _write(root, "rte", "dcft", seed, score, kernel=8, stride=None, params=7488, time_s=t)
    _write(root, "rte", "dcft", 1, 0.55, kernel=2, stride=2, params=20880)
    _write(root, "rte", "lora", 1, 0.65, r=1, params=41472)
    _write(root, "rte", "lora", 2, 0.0, r=1, status="failed")
    _write(root, "rte", "lora", 3, 0.99, r=1, debug="smoke", steps=4)
    _write(root, "cola", "lora", 1, 0.30, r=1)
    _write(root, "squad", "lora", 1, 87.5, r=1)
    return root


def test_tidy_view_has_named_columns(runs):
    raw = R.load_all(runs)
    df = R.load_tidy(runs)
    assert len(df) == len(raw) == 9 and 30 <= len(df.columns) <= 60
    row = df[(df["method"] == "dcft") & (df["kernel"] == 2)].iloc[0]
    assert (row["stride"], row["seed"], row["score"], row["params_method"], row["setting"]) == \
        (2, 1, 0.55, 20880, "kernel=2 stride=2 targets=all")
    k8 = df[(df["method"] == "dcft") & (df["kernel"] == 8)]
    assert set(k8["stride"]) == {8}  # a null stride is the kernel
    assert list(df[df["debug"] == "smoke"]["smoke"]) == [True]


def test_compare_groups_seeds_mean_std_n(runs):
    t = R.compare(R.load_tidy(runs), R.parse_filters(["task=rte", "method=dcft,lora"]))
    got = {(r["method"], r["setting"]): r for r in t.to_dict(orient="records")}
    assert list(got) == [("dcft", "kernel=2 stride=2 targets=all"), ("dcft", "kernel=8 stride=8 targets=all"),
                         ("lora", "r=1 targets=all")]  # failed and smoke runs left out; kernel 2 before 8
    k8 = got[("dcft", "kernel=8 stride=8 targets=all")]
    assert k8["n"] == 3 and k8["seeds"] == "1,2,3"
    assert k8["score_mean"] == pytest.approx(0.70) and k8["score_std"] == pytest.approx(0.10)  # sample std of .6 .7 .8
    assert k8["train_time_s_mean"] == pytest.approx(120.0) and k8["params_method"] == 7488 and k8["steps"] == 40
    assert math.isnan(got[("lora", "r=1 targets=all")]["score_std"])  # one seed: no std


def test_compare_cli_text_and_csv(runs, tmp_path):
    cmd = [sys.executable, "-m", "dcft.report.results", str(runs), "task=rte", "method=dcft,lora", "--csv", str(tmp_path / "c.csv")]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if "kernel=8" in l)
    assert "70.00 ± 10.00" in line and " 3 " in line and "7.5K" in line and "2.00" in line  # ×100; 120 s = 2.00 min
    assert "not shown: 1 failed, 1 smoke" in out
    rows = list(csv.DictReader(io.StringIO((tmp_path / "c.csv").read_text())))
    assert [float(r["score_mean"]) for r in rows] == pytest.approx([0.55, 0.70, 0.65])
    squad = subprocess.run([sys.executable, "-m", "dcft.report.results", str(runs), "task=squad"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    assert "87.50" in squad  # SQuAD F1 is already ×100


def test_filters_are_checked(runs):
    with pytest.raises(ValueError, match="no column 'tsk'"):
        R.parse_filters(["tsk=rte"])
    with pytest.raises(ValueError, match="column=value"):
        R.parse_filters(["rte"])
    p = subprocess.run([sys.executable, "-m", "dcft.report.results", str(runs / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr


def test_summary_names_preset_lr_budget_smoke_and_adapter():
    """Issue #15: "the end-of-run summary does not say smoke, preset or learning rate"."""
    rec = {"status": "completed", "run_dir": "/r", "choices": {"preset": "cpu", "debug": "smoke"},
           "hp_sources": {"hp@_global_": "conf/hp/cpu/minilm/rte.yaml"},
           "config": {"model": {"name": "minilm"}, "task": {"name": "rte"}, "seed": 6,
                      "method": {"name": "dcft", "kernel": 8, "stride": None, "targets": "all"},
                      "train": {"lr": 1.2e-3, "batch_size": 8, "max_len": 64}},
           "params": {"method": 7488, "head": 148610, "total": 22721474},
           "metrics": {"best": {"score": 0.5, "step": 4, "validation/accuracy": 0.5},
                       "final": {"step": 4, "validation/accuracy": 0.5}},
           "train": {"steps": 4, "epochs": 1, "final_loss": 0.75, "final_task_loss": 0.5, "train_time_s": 2.0},
           "adapter": {"format": "peft", "dir": "adapter", "best": "adapter/best", "final": "adapter/final"}}
    text = R.summary(rec)
    for part in ("kernel=8 stride=8", "SMOKE", "preset cpu (conf/hp/cpu/minilm/rte.yaml)", "lr 0.0012",
                 "trained 4 optimizer steps, 1 full epoch(s)", "0.5000 task + 0.2500 regulariser",
                 "adapter saved to: /r/adapter (best, final)", "method 7,488"):
        assert part in text, (part, text)
    rec["choices"]["debug"], rec["adapter"] = None, {"format": None, "reason": "method full saves no adapter"}
    text = R.summary(rec)
    assert "SMOKE" not in text and "adapter: not saved (method full saves no adapter)" in text


def _holdout_run(root: Path, seed: int, holdout: float, dev: float, *, init: str = "normal", task: str = "sst2",
                 split: str = "validation") -> None:
    """A DCFT run whose best step was picked on a held-out slice scoring 0.90 (its `score`), dev `dev`."""
    d = root / "m" / task / "dcft" / f"{init}-{seed}-{holdout}"
    d.mkdir(parents=True)
    metric = "accuracy"
    best = {"score": 0.90, "step": 300, f"holdout/{metric}": 0.90, f"{split}/{metric}": dev}
    if holdout == 0:
        best = {"score": dev, "step": 300, f"{split}/{metric}": dev}
    rec = {"status": "completed", "choices": {"preset": "cpu"},
           "config": {"model": {"name": "minilm"}, "task": {"name": task}, "seed": seed, "data": {"holdout": holdout},
                      "method": {"name": "dcft", "kernel": 8, "stride": 8, "targets": "all", "rank": 1, "init": init},
                      "train": {"lr": 5e-3}},
           "metrics": {"best": best, "final": {**best, f"{split}/{metric}": dev - 0.01}},
           "params": {"method": 7488}, "train": {"steps": 1000}}
    (d / "result.json").write_text(json.dumps(rec))


def test_a_held_out_run_reports_its_dev_score_not_the_selection_score(tmp_path):
    """With `data.holdout`, a result file's `score` is the held-out score that picked the step; the
    comparison must show the dev score at that step (the CPU study's runs: held-out 88.4, dev 85.7), and
    the held-out one only as `selection_score`. MNLI's dev score is the matched set's."""
    root = tmp_path / "runs"
    _holdout_run(root, 6, 0.01, 0.84)
    _holdout_run(root, 7, 0.01, 0.86)
    _holdout_run(root, 6, 0.0, 0.80, task="rte")  # no holdout: the score is dev already
    _holdout_run(root, 6, 0.01, 0.83, task="mnli", split="validation_matched")
    df = R.load_tidy(root)
    sst2 = df[df["task"] == "sst2"].sort_values("seed")
    assert list(sst2["score"]) == [0.84, 0.86] and list(sst2["selection_score"]) == [0.90, 0.90]
    assert list(sst2["final_score"]) == pytest.approx([0.83, 0.85])
    assert df[df["task"] == "rte"].iloc[0]["score"] == 0.80
    assert df[df["task"] == "mnli"].iloc[0]["score"] == 0.83
    t = R.compare(df, R.parse_filters(["task=sst2"]))
    assert t.iloc[0]["score_mean"] == pytest.approx(0.85) and t.iloc[0]["n"] == 2


def test_dcft_initialisation_is_part_of_the_setting(tmp_path):
    """Runs that differ only in `method.init` are two settings, never averaged together; the
    authors' "normal" is not spelled out."""
    root = tmp_path / "runs"
    _holdout_run(root, 6, 0.01, 0.84)
    _holdout_run(root, 6, 0.01, 0.70, init="lora")
    t = R.compare(R.load_tidy(root))
    got = {r["setting"]: r["score_mean"] for r in t.to_dict(orient="records")}
    assert got == {"kernel=8 stride=8 targets=all": 0.84, "kernel=8 stride=8 targets=all init=lora": 0.70}
