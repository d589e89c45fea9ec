"""A table compares like with like (`dcft.report.selection`, used by `dcft.report.tables` and the CPU study's report).

Each test builds result files by hand and checks a cell against values worked out here:

* runs of another budget, held-out protocol, process count, device kind or precision never compete
  with the cell's runs: the cell keeps the condition the rest of its column ran under;
* every learning rate is compared on the tuning seed, so a lucky single seed never beats a three-seed
  setting on a mean over different seeds, and a rate without the tuning seed is not compared;
* seeds are grouped and duplicates found on the whole identity: runs on edited data are not averaged
  with runs on the original, runs of another code revision or process count are not dropped as
  duplicates;
* SoRA's and AdaLoRA's #Params come from the selected runs (mean, with the range);
* the best-step rule under ties is the earliest (a study's report shows what the other rule changes:
  tests/study/test_study_report.py);
* on the committed CPU study, `dcft.report.tables` gives the study's own Table 1 cells.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dcft.report import tables as T
from dcft.report.selection import best_entry
from conftest import ROOT

METRIC = {"cola": "validation/matthews_correlation", "sst2": "validation/accuracy", "stsb": "validation/pearson",
          "rte": "validation/accuracy"}


def result(root: Path, folder: str, *, task: str = "sst2", method: str = "lora", lr: float = 1e-3, seed: int = 6,
           steps: int = 1000, holdout: float = 0.1, processes: int = 1, device: str = "cpu", precision: str = "no",
           train_sha: str = "a1", code_method: int = 1, score: float = 0.8, dev: float = 0.8,
           history: list | None = None, params: int = 1000, live: int | None = None, kernel: int | None = None,
           finished: str = "2026-01-01T00:00:00", model: str = "minilm") -> Path:
    """A completed run's result file, shaped as `dcft.harness.experiment` writes it: `score` is the selection score
    (held-out with `holdout` > 0, else dev) at the best step, `dev` the dev metric there."""
    dev_key = METRIC[task]
    mcfg = {"name": method}
    if method == "dcft":
        mcfg = {"name": "dcft", "kernel": kernel, "stride": kernel, "targets": "all", "rank": 1, "init": "normal"}
    declared = {"model": {"name": model}, "task": {"name": task}, "method": mcfg, "seed": seed,
                "data": {"holdout": holdout}, "train": {"lr": lr, "max_steps": steps, "mixed_precision": "auto"}}
    best = {"step": 100, "score": score if holdout else dev, dev_key: dev}
    if holdout:
        best[dev_key.replace("validation", "holdout")] = score
    run_dir = root / model / task / method / folder
    run_dir.mkdir(parents=True, exist_ok=True)
    rec = {"status": "completed", "run_dir": str(run_dir),
           "choices": {"model": model, "task": task, "method": method, "preset": "cpu", "debug": None},
           "config": {**declared, "train": {**declared["train"], "device": "auto"}},
           "identity": {"declared": declared, "hash": "0" * 8,
                        "inputs": {"data": {"source": "files", "files": {"train": {"file": "train.tsv",
                                                                                  "sha256": train_sha}}}},
                        "code": {"loop": 1, "method": code_method}},
           "device": device, "precision": precision, "processes": processes,
           "environment": {"host": "vm", "cpu": "test cpu"},
           "params": {"method": params, **({"after_training": {"live_params": live}} if live is not None else {})},
           "metrics": {"best": best, "final": best, "history": history or [best]},
           "train": {"steps": steps, "train_time_s": 60.0}, "finished_at": finished}
    (run_dir / "result.json").write_text(json.dumps(rec), encoding="utf-8")
    return run_dir


def cell(cells: list[T.Cell], row: str, task: str) -> T.Cell:
    return next(c for c in cells if c.row.setting == row and c.task == task and c.metric == METRIC[task])


def table1(root: Path, **kw) -> tuple[T.Grid, list[T.Cell]]:
    return T.build(1, T.load_runs(root), model="minilm", params_csv=root / "absent.csv", **kw)


def column_at(root: Path, task: str, **kw) -> None:
    """Full FT and DCFT k8 runs of the same column under the condition `kw` (the column's protocol)."""
    result(root, f"full-column-{task}", task=task, method="full", lr=5e-5, dev=0.5, **kw)
    result(root, f"dcft-column-{task}", task=task, method="dcft", kernel=8, lr=5e-3, dev=0.5, **kw)


# ---- conditions never compete ------------------------------------------------------------------------
def test_a_longer_budget_never_fills_the_cell_of_the_tables_budget(tmp_path: Path):
    """Full FT on CoLA at 1200 steps (the column's budget): lr 5e-5 seeds 6, 7, 8 (dev .26, .27, .28; held-out
    of seed 6 .35) and lr 1e-4 seed 6 (held-out .34); at 2400 steps (a budget check) lr 5e-5 seeds 6, 7, 8
    with dev .31 and held-out .37. The cell: 1200 steps, lr 5e-5, (26 + 27 + 28) / 3 = 27.00, n = 3; the
    2400-step runs are left out naming the budget."""
    root = tmp_path / "runs"
    result(root, "lora-column-cola", task="cola", method="lora", lr=5e-3, dev=0.5, steps=1200)
    result(root, "dcft-column-cola", task="cola", method="dcft", kernel=8, lr=5e-3, dev=0.5, steps=1200)
    for seed, dev in ((6, 0.26), (7, 0.27), (8, 0.28)):
        result(root, f"lr5e-5-s{seed}", task="cola", method="full", lr=5e-5, seed=seed, steps=1200, score=0.35, dev=dev)
        result(root, f"x2-s{seed}", task="cola", method="full", lr=5e-5, seed=seed, steps=2400, score=0.37, dev=0.31)
    result(root, "lr1e-4-s6", task="cola", method="full", lr=1e-4, steps=1200, score=0.34, dev=0.30)
    grid, cells = table1(root)
    c = cell(cells, "Fine-Tune", "cola")
    assert (c.ours, c.n, c.lrs) == (pytest.approx(27.0), 3, [5e-5])
    assert sorted(c.runs) == [f"minilm/cola/full/lr5e-5-s{s}" for s in (6, 7, 8)]
    budget = [u for u in c.not_selected if "train.max_steps 2400 vs 1200" in u]
    assert len(budget) == 3 and all("another condition" in u for u in budget)
    note = next(n for n in grid.notes if n.startswith("Picked Fine-Tune / CoLA:"))
    assert "lr 5e-05, the best of 2 at seed 6 (5e-05: 0.3500, 0.0001: 0.3400)" in note
    assert "left out 3 runs: another condition: train.max_steps 2400 vs 1200" in note


def test_holdout_and_dev_selected_runs_never_compete(tmp_path: Path):
    """LoRA on SST-2 at lr 1e-3, seed 6, twice: held-out-selected (data.holdout 0.1; held-out .80, dev .84),
    as the rest of the column, and dev-selected (holdout 0; dev .90, its own selection score). The
    dev-selected run's score was picked on dev: it must not beat a held-out score. Cell: 84.00."""
    root = tmp_path / "runs"
    column_at(root, "sst2", holdout=0.1)
    result(root, "held", score=0.80, dev=0.84, holdout=0.1)
    result(root, "dev", dev=0.90, holdout=0.0)
    _, cells = table1(root)
    c = cell(cells, "LoRA", "sst2")
    assert (c.ours, c.n, c.runs) == (pytest.approx(84.0), 1, ["minilm/sst2/lora/held"])
    assert c.not_selected == ["minilm/sst2/lora/dev (another condition: data.holdout 0.0 vs 0.1 (the cell's))"]


@pytest.mark.parametrize("key, ours, other, shown", [
    ("processes", 1, 2, "run.processes 2 vs 1"),
    ("device", "cpu", "cuda:0", "run.device_kind cuda vs cpu"),
    ("precision", "no", "bf16", "run.precision bf16 vs no"),
])
def test_processes_device_and_precision_never_compete_nor_collapse(tmp_path: Path, key, ours, other, shown):
    """Two LoRA runs alike in their declared configuration and seed, one made with another process count
    (global batch), device kind or precision, finished later and scoring higher (dev .90 against .84). Both
    are kept (not one configuration in two folders), and the cell takes the column's condition: 84.00."""
    root = tmp_path / "runs"
    column_at(root, "sst2", **{key: ours})
    result(root, "same", score=0.80, dev=0.84, **{key: ours})
    result(root, "other", score=0.85, dev=0.90, finished="2026-02-01T00:00:00", **{key: other})
    runs = T.load_runs(root)
    assert runs.duplicates == [] and len(runs.usable) == 4
    _, cells = table1(root)
    c = cell(cells, "LoRA", "sst2")
    assert (c.ours, c.runs) == (pytest.approx(84.0), ["minilm/sst2/lora/same"])
    assert c.not_selected == [f"minilm/sst2/lora/other (another condition: {shown} (the cell's))"]


# ---- one tuning seed ------------------------------------------------------------------------------------
def test_a_one_seed_setting_never_beats_a_three_seed_one_on_a_mean_over_other_seeds(tmp_path: Path):
    """LoRA on SST-2: lr A (1e-3) seeds 6, 7, 8 with held-out .80, .70, .70 (mean .733) and dev .85, .84,
    .86; lr B (2e-3) seed 6 only, held-out .79 (dev .83); lr C (5e-3) seed 7 only, held-out .95. Compared on
    seed 6, A (.80) beats B (.79); C has no seed-6 run and is not compared. Cell: A, (85 + 84 + 86) / 3 = 85.00,
    n = 3."""
    root = tmp_path / "runs"
    for seed, sel, dev in ((6, 0.80, 0.85), (7, 0.70, 0.84), (8, 0.70, 0.86)):
        result(root, f"A-s{seed}", lr=1e-3, seed=seed, score=sel, dev=dev)
    result(root, "B-s6", lr=2e-3, score=0.79, dev=0.83)
    result(root, "C-s7", lr=5e-3, seed=7, score=0.95, dev=0.95)
    _, cells = table1(root)
    c = cell(cells, "LoRA", "sst2")
    assert (c.ours, c.n, c.lrs) == (pytest.approx(85.0), 3, [1e-3])
    assert c.missing == []
    reasons = dict(u.split(" (", 1) for u in c.not_selected)
    assert reasons["minilm/sst2/lora/B-s6"] == "train.lr 0.002 vs 0.001: score 0.7900 < 0.8000 at the tuning seed 6)"
    assert reasons["minilm/sst2/lora/C-s7"] == "train.lr 0.005 vs 0.001: no run at the tuning seed 6: not compared)"


def test_a_chosen_setting_with_fewer_seeds_than_asked_is_marked(tmp_path: Path):
    """lr A seeds 6, 7, 8 (held-out of seed 6 .80), lr B seed 6 only (held-out .85, dev .83). The table asks
    for seeds 6, 7, 8: B wins on seed 6 and its cell says which seeds it lacks; A's count plays no part."""
    root = tmp_path / "runs"
    for seed in (6, 7, 8):
        result(root, f"A-s{seed}", lr=1e-3, seed=seed, score=0.80, dev=0.85)
    result(root, "B-s6", lr=2e-3, score=0.85, dev=0.83)
    grid, cells = table1(root, seeds=(6, 7, 8))
    c = cell(cells, "LoRA", "sst2")
    assert (c.ours, c.n, c.lrs, c.missing) == (pytest.approx(83.0), 1, [2e-3], [7, 8])
    assert T.format_cell(c).startswith("83.00 (n=1; seeds 7, 8 missing) vs ")
    assert any("names the seeds of 6, 7, 8 it lacks" in n for n in grid.notes)


# ---- seed grouping and duplicates on the whole identity ---------------------------------------------------
def test_runs_on_edited_data_are_not_averaged_with_runs_on_the_original(tmp_path: Path):
    """LoRA seeds 6 and 7 on the original train.tsv (dev .84, .86) and seed 6 on an edited copy (another
    SHA-256; dev .60). The cell averages the two original runs only: 85.00, n = 2."""
    root = tmp_path / "runs"
    column_at(root, "sst2", train_sha="a1")
    result(root, "orig-s6", seed=6, dev=0.84, train_sha="a1")
    result(root, "orig-s7", seed=7, dev=0.86, train_sha="a1")
    result(root, "edited-s6", seed=6, dev=0.60, train_sha="e2")
    _, cells = table1(root)
    c = cell(cells, "LoRA", "sst2")
    assert (c.ours, c.n) == (pytest.approx(85.0), 2)
    assert c.not_selected == ["minilm/sst2/lora/edited-s6 (another condition: "
                              "inputs.data.files.train.sha256 e2 vs a1 (the cell's))"]


def test_runs_of_another_code_revision_are_not_dropped_as_duplicates(tmp_path: Path):
    """Same declared configuration, data and seed, method revision 1 and 2: two results, not one
    configuration in two folders. The cell takes the column's revision (1); the other is named."""
    root = tmp_path / "runs"
    column_at(root, "sst2", code_method=1)
    result(root, "rev1", dev=0.84, code_method=1)
    result(root, "rev2", dev=0.90, code_method=2, finished="2026-02-01T00:00:00")
    runs = T.load_runs(root)
    assert runs.duplicates == [] and len(runs.usable) == 4
    _, cells = table1(root)
    c = cell(cells, "LoRA", "sst2")
    assert (c.ours, c.runs) == (pytest.approx(84.0), ["minilm/sst2/lora/rev1"])
    assert c.not_selected == ["minilm/sst2/lora/rev2 (another condition: code.method 2 vs 1 (the cell's))"]


def test_one_identity_in_two_folders_is_still_a_duplicate(tmp_path: Path):
    root = tmp_path / "runs"
    result(root, "first", dev=0.84)
    result(root, "copy", dev=0.84, finished="2026-02-01T00:00:00")
    runs = T.load_runs(root)
    assert [r["run"] for r in runs.usable] == ["minilm/sst2/lora/copy"]
    assert len(runs.duplicates) == 1


# ---- #Params of pruning methods ------------------------------------------------------------------------
def sora_runs(root: Path) -> None:
    """SoRA on SST-2: lr 2e-3 seeds 6, 7, 8 (held-out .88) pruned to 60,000, 70,000 and 89,000 live
    parameters; lr 3e-4 seed 6 (held-out .86) kept 211,385. Nominal count: 332,064."""
    for seed, live in ((6, 60_000), (7, 70_000), (8, 89_000)):
        result(root, f"s{seed}", method="sora", lr=2e-3, seed=seed, score=0.88, dev=0.85, params=332_064, live=live)
    result(root, "low-lr", method="sora", lr=3e-4, score=0.86, dev=0.84, params=332_064, live=211_385)


def test_pruned_params_in_the_tables_are_the_selected_runs_mean_with_range(tmp_path: Path):
    root = tmp_path / "runs"
    sora_runs(root)
    grid, cells = table1(root)
    row = next(r for r in grid.rows if r[1] == "SoRA")
    assert row[2].startswith("73,000 (60,000 to 89,000) vs ")  # (60,000 + 70,000 + 89,000) / 3 = 73,000
    p = next(c for c in cells if c.row.setting == "SoRA" and c.metric == "params")
    assert (p.ours, p.low, p.high, p.n) == (73_000, 60_000, 89_000, 3)
    line = next(x for x in T.to_csv(1, cells).splitlines() if ",SoRA,sora," in x and ",params," in x)
    assert ",params,73000,,3,60000,89000," in line


# ---- the best step under ties --------------------------------------------------------------------------
HISTORY = [{"step": 100, "score": 0.5, "validation/accuracy": 0.70}, {"step": 200, "score": 0.7, "validation/accuracy": 0.80},
           {"step": 300, "score": 0.7, "validation/accuracy": 0.90}, {"step": 400, "score": 0.6, "validation/accuracy": 0.95}]


def test_best_step_rule_earliest_by_default_latest_on_request():
    assert best_entry(HISTORY)["step"] == 200  # the training loop's record: a later tie does not replace it
    assert best_entry(HISTORY, "latest")["step"] == 300
    with pytest.raises(ValueError, match="earliest, latest"):
        best_entry(HISTORY, "middle")


# ---- the committed CPU study --------------------------------------------------------------------------
def test_the_paper_table_from_the_cpu_study_runs_gives_the_studys_own_cells():
    """`python -m dcft.report.tables --model minilm --tables 1 --runs results/cpu-study/runs` fills every cell the
    study reports with the study's own value, seeds and runs (its committed `tables/cells.csv`)."""
    study = ROOT / "results" / "cpu-study"
    rows = [r for r in csv.DictReader((study / "tables" / "cells.csv").open(encoding="utf-8")) if r["table"] == "table1"]
    label = {"DCFT k8": "DCFT Δ", "DCFT k2": "DCFT †", "LoRA r=1": "LoRA", "LoRA-FA r=1": "LoRA-FA", "SoRA": "SoRA",
             "BitFit": "BitFit", "HAdapter": "HAdapter", "PAdapter": "PAdapter", "Full FT": "Fine-Tune"}
    _, cells = T.build(1, T.load_runs(study / "runs"), model="minilm")
    checked = set()
    for r in rows:
        if r["setting"] not in label:  # AdaLoRA: no row in the paper's Table 1
            continue
        c = cell(cells, label[r["setting"]], r["task"])
        assert (round(c.ours, 4), c.n, sorted(c.runs)) == (float(r["mean"]), int(r["n"]), sorted(r["runs"].split())), r
        checked.add((r["task"], r["setting"]))
    # at least the first edition's cells (SST-2: 9 rows, CoLA: 4); the second edition's join as they run
    assert {("sst2", s) for s in label} | {("cola", s) for s in ("DCFT k8", "DCFT k2", "LoRA r=1", "Full FT")} <= checked


def test_figures_2_and_3_show_the_runs_a_cell_would(tmp_path: Path):
    """Figures 2 and 3 take LoRA's and DCFT's runs on a task as a table cell does: LoRA lr 1e-3 (seeds 6, 7,
    held-out .80) and lr 2e-3 (seed 6, .85) at 1000 steps, beside DCFT k8 at 1000 steps; a 2000-step LoRA run
    (.95) is another budget. Shown: LoRA lr 2e-3 seed 6, and DCFT's run."""
    from dcft.report import figures as F

    root = tmp_path / "runs"
    result(root, "dcft", method="dcft", kernel=8, lr=5e-3, dev=0.5)
    for seed in (6, 7):
        result(root, f"a-s{seed}", lr=1e-3, seed=seed, score=0.80)
    result(root, "b-s6", lr=2e-3, score=0.85)
    result(root, "long", lr=2e-3, score=0.95, steps=2000)
    shown = sorted(r["run"] for r in F.selected(T.load_runs(root), "minilm", ("sst2",), (8,)))
    assert shown == ["minilm/sst2/dcft/dcft", "minilm/sst2/lora/b-s6"]


def test_the_run_comparison_never_averages_runs_of_other_data(tmp_path: Path):
    """`python -m dcft.report.results`: LoRA seeds 6 and 7 on the original train.tsv (dev .84, .86) and seed 6 on an
    edited copy (.60) are two rows, (84 + 86) / 2 = 85 over seeds 6, 7 and the edited run alone, which names
    the key that sets it apart; not one row of n = 3 over seeds 6, 6, 7."""
    from dcft.report import results as RS

    root = tmp_path / "runs"
    result(root, "orig-s6", seed=6, dev=0.84, holdout=0.0)
    result(root, "orig-s7", seed=7, dev=0.86, holdout=0.0)
    result(root, "edited-s6", seed=6, dev=0.60, holdout=0.0, train_sha="e2")
    t = RS.compare(RS.load_tidy(root)).to_dict(orient="records")
    assert [(r["n"], r["seeds"], round(r["score_mean"], 4)) for r in sorted(t, key=lambda r: -r["n"])] == \
        [(2, "6,7", 0.85), (1, "6", 0.60)]
    assert sorted(r["differs"] for r in t) == ["", "identity: inputs.data.files.train.sha256 e2 vs a1"]
    assert "identity: inputs.data.files.train.sha256 e2 vs a1" in RS.format_compare(RS.compare(RS.load_tidy(root)))


def test_a_time_cell_from_several_machines_says_so(tmp_path: Path):
    """Table 5's stride-2 time on CoLA from two seeds timed on different GPUs (1.5 h and 0.5 h): the mean
    1.00 is shown, marked as timed on 2 machines."""
    root = tmp_path / "runs"
    for seed, gpu, secs in ((6, "NVIDIA A100", 5400.0), (7, "NVIDIA T4", 1800.0)):
        d = result(root, f"s{seed}", task="cola", method="dcft", kernel=8, seed=seed, device="cuda:0")
        rec = json.loads((d / "result.json").read_text())
        rec["identity"]["declared"]["method"]["stride"] = rec["config"]["method"]["stride"] = 2
        rec["environment"]["gpu"], rec["train"]["train_time_s"] = gpu, secs
        (d / "result.json").write_text(json.dumps(rec))
    grid, cells = T.build(5, T.load_runs(root), model="minilm")
    t = next(c for c in cells if c.row.setting == "stride=2" and c.task == "cola" and c.metric == "time_h")
    assert (t.ours, t.n, t.machines) == (pytest.approx(1.0), 2, 2)
    assert T.format_cell(t).startswith("1.00±0.71? (n=2, 2 machines) vs ")  # "?": the fixtures record no machine load


def test_without_the_tuning_seed_a_lone_rate_fills_the_cell_and_two_rates_leave_it_empty(tmp_path: Path):
    """Seed 7 only: one rate needs no comparison and fills the cell (seed 6 marked missing); two rates
    cannot be compared on the tuning seed, so the cell stays empty and says why."""
    from dcft.report.selection import choose, describe

    root = tmp_path / "runs"
    result(root, "a-s7", lr=1e-3, seed=7, dev=0.84)
    runs = T.load_runs(root).usable
    one = choose(runs)
    assert ([r["run"] for r in one.runs], one.missing) == (["minilm/sst2/lora/a-s7"], [6])
    assert describe(one) == "lr 0.001, the only one (no run at seed 6: nothing to compare)"
    result(root, "b-s7", lr=2e-3, seed=7, dev=0.90)
    two = choose(T.load_runs(root).usable)
    assert two.runs == [] and two.empty == "no run at the tuning seed 6 to compare its 2 settings on (their seeds: 7)"
    _, cells = table1(root)
    assert cell(cells, "LoRA", "sst2").ours is None
