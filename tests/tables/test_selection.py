"""Tables never drop a run silently and select the learning rate per method as the paper did: where
several learning rates could fill a cell, the one whose tuning-seed run scores best wins, the chosen
runs and learning rate are named, every other is listed (`dcft.report.selection`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from dcft.report import tables as T
from test_tables import acc, write_run

M = "deberta-v3-base"


def _rte_cell(cells, setting: str):
    return next(c for c in cells if c.row.setting == setting and c.task == "rte" and c.metric != "time_h")


def test_two_lora_learning_rates_show_the_better_and_list_the_other(tmp_path: Path):
    root = tmp_path / "runs"
    write_run(root, M, "rte", "lora", lr=1e-3, metrics=acc("rte", 0.80), params=100)
    write_run(root, M, "rte", "lora", lr=5e-4, metrics=acc("rte", 0.85), params=100)
    runs = T.load_runs(root)
    assert len(runs.usable) == 2 and not runs.duplicates  # nothing collapsed: two configurations
    grid, cells = T.build(1, runs)
    rte = _rte_cell(cells, "LoRA")
    assert rte.ours == pytest.approx(85.0) and rte.n == 1 and rte.lrs == [5e-4]
    assert rte.runs == [f"{M}/rte/lora/seed=6,lr=0.0005"]
    assert len(rte.not_selected) == 1 and rte.not_selected[0].startswith(f"{M}/rte/lora/seed=6,lr=0.001 (")
    assert "0.8000 < 0.8500" in rte.not_selected[0] and "train.lr 0.001 vs 0.0005" in rte.not_selected[0]
    row = next(r for r in csv.DictReader(io.StringIO(T.to_csv(1, cells)))
               if r["setting"] == "LoRA" and r["task"] == "rte" and r["model"] == M)
    assert (row["ours"], row["lr"], row["runs"]) == ("85.0000", "0.0005", f"{M}/rte/lora/seed=6,lr=0.0005")
    assert "lr=0.001" in row["not_selected"]
    assert f"Picked LoRA / RTE: lr 0.0005, the best of 2 at seed 6 (0.0005: 0.8500, 0.001: 0.8000)." in grid.notes
    assert any("Cells with a choice: 1." in n for n in grid.notes)


def test_the_rate_is_chosen_on_the_tuning_seed_and_the_cell_reports_all_its_seeds(tmp_path: Path):
    """lr A: seed 6 0.90, seed 7 0.60 (mean 0.75); lr B: seeds 6 and 7 at 0.80 (mean 0.80). Every rate is
    compared on the same seed (6): A wins, 0.90 > 0.80, and its cell is the mean of both its seeds,
    (90 + 60) / 2 = 75, n = 2. (Choosing on each rate's mean over whatever seeds it has would take B.)"""
    root = tmp_path / "runs"
    for seed, v in ((6, 0.90), (7, 0.60)):
        write_run(root, M, "rte", "lora", lr=1e-3, seed=seed, metrics=acc("rte", v))
    for seed in (6, 7):
        write_run(root, M, "rte", "lora", lr=2e-3, seed=seed, metrics=acc("rte", 0.80))
    _, cells = T.build(1, T.load_runs(root))
    rte = _rte_cell(cells, "LoRA")
    assert (rte.ours, rte.n, rte.lrs) == (pytest.approx(75.0), 2, [1e-3])
    assert len(rte.not_selected) == 2 and all("0.8000 < 0.9000 at the tuning seed 6" in u for u in rte.not_selected)


def test_holdout_runs_are_selected_on_their_holdout_score_and_report_dev(tmp_path: Path):
    """With data.holdout the loop's `score` is the held-out slice's: selection reads it, never dev."""
    root = tmp_path / "runs"
    write_run(root, M, "rte", "lora", lr=1e-3, holdout=0.1, score=0.70, metrics=acc("rte", 0.90))
    write_run(root, M, "rte", "lora", lr=5e-4, holdout=0.1, score=0.75, metrics=acc("rte", 0.80))
    grid, cells = T.build(1, T.load_runs(root))
    rte = _rte_cell(cells, "LoRA")
    assert rte.ours == pytest.approx(80.0) and rte.lrs == [5e-4]
    assert any("held-out slice of the training set" in n for n in grid.notes)


def test_params_cell_is_the_runs_own_count_with_the_make_params_cross_check(tmp_path: Path):
    root = tmp_path / "runs"
    write_run(root, M, "rte", "lora", lr=1e-3, metrics=acc("rte", 0.8), params=123_456)
    params_csv = tmp_path / "params.csv"
    params_csv.write_text("table,model,method,kernel,stride,targets,params,params_paper_units,paper,match,units,note\n"
                          f"1,{M},lora,,,all,165888,0.17M,0.17M,True,decimal,\n")
    grid, cells = T.build(1, T.load_runs(root), params_csv=params_csv)
    p = next(c for c in cells if c.row.setting == "LoRA" and c.model == M and c.metric == "params")
    assert p.ours == 123_456 and p.match is False  # 0.12M, printed 0.17M
    assert any("cross-check" in n and "123,456" in n and "165,888" in n for n in grid.notes)


@pytest.mark.parametrize("count,backbone,printed,ok", [
    (147_456, 184_000_000, "0.08%", True),    # 0.0801...% -> 0.08
    (147_456, 184_000_000, "0.09%", False),
    (165_000, 184_000_000, "0.09%", True),    # 0.0896...% rounds half up to 0.09
    (165_000, 184_000_000, "0.08%", True),    # ... and truncates to 0.08 (the rule for every printed cell)
    (200_000, 184_000_000, "0.1%", True),     # 0.1086...%
])
def test_percent_cells_are_parsed_and_matched(count, backbone, printed, ok):
    assert T.percent_matches(count, backbone, printed) is ok


def test_one_configuration_in_two_folders_is_a_named_duplicate(tmp_path: Path):
    root = tmp_path / "runs"
    write_run(root, M, "rte", "lora", lr=1e-3, metrics=acc("rte", 0.80), finished="2026-01-01T00:00:00")
    newer = write_run(root, M, "rte", "lora", lr=1e-3, metrics=acc("rte", 0.81), finished="2026-02-01T00:00:00",
                      folder="copy")
    runs = T.load_runs(root)
    assert [r["path"] for r in runs.usable] == [newer.as_posix()]
    assert "same effective configuration as" in runs.duplicates[0]["reason"]
