"""The study report: the committed CPU study regenerated from its runs, and its pieces by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from study_fixtures import STUDY, result, write_study
from dcft.study.planner import Cell, Decisions, paired
from dcft.study.report import (_paired_text, bench_times, early_mean, pareto_points, report, retuned_cells,
                               retuned_rows, table1_cells, write_claims, write_tables, write_tie_rule)
from dcft.study.spec import load
from dcft.report.tables import load_runs

COMMITTED = ROOT / "results" / "cpu-study"


@pytest.mark.slow  # reads 172 result files and writes every table and figure: about half a minute
def test_the_cpu_study_file_reproduces_the_committed_tables(tmp_path):
    """Every committed table's csv, byte for byte, from the committed runs and conf/study/cpu-minilm.yaml."""
    (tmp_path / "bench-minilm.json").write_bytes((COMMITTED / "bench-minilm.json").read_bytes())
    report(load("conf/study/cpu-minilm.yaml"), COMMITTED / "runs", tmp_path)
    committed = sorted(p.name for p in (COMMITTED / "tables").glob("*.csv"))
    assert "table1.csv" in committed and "convergence.csv" in committed
    for name in committed:
        assert (tmp_path / "tables" / name).read_bytes() == (COMMITTED / "tables" / name).read_bytes(), name


def test_paired_difference_and_its_t_interval_by_hand():
    a = Cell({6: 81.0, 7: 82.0, 8: 83.0}, [])
    b = Cell({6: 80.0, 7: 80.0, 8: 80.0, 9: 99.0}, [])  # seed 9 has no partner: left out
    p = paired(a, b)
    # differences 1, 2, 3: mean 2, std 1, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3) = 2.4842
    assert p["diffs"] == [1.0, 2.0, 3.0] and p["mean"] == pytest.approx(2.0) and p["std"] == pytest.approx(1.0)
    assert (p["lo"], p["hi"]) == (pytest.approx(-0.4842, abs=1e-4), pytest.approx(4.4842, abs=1e-4))
    assert p["exceeds"] is False
    assert paired(Cell({6: 85.0, 7: 86.0, 8: 85.5}, []), b)["exceeds"] is True  # 5, 6, 5.5: [4.26, 6.74]
    assert _paired_text(paired(Cell({6: 82.5}, []), Cell({6: 80.0, 7: 81.0}, []))) == ["+2.50", "+2.50 (n=1)", "-", "-"]


def test_early_mean_averages_each_seeds_first_half_by_hand():
    by_step = {100: Cell({6: 10.0, 7: 20.0, 8: 5.0}, ["a"]), 200: Cell({6: 30.0, 7: 40.0}, ["b"]),
               300: Cell({6: 50.0, 7: 60.0, 8: 0.0}, []), 400: Cell({6: 70.0, 7: 80.0, 8: 0.0}, [])}
    half = early_mean(by_step)  # steps 100 and 200 (<= 400 / 2); seed 8 has no step 200: left out
    assert half.values == {6: 20.0, 7: 30.0} and half.runs == ["a", "b"]
    assert early_mean({}).n == 0


def test_bench_times_keep_the_fast_harness_training_rows(tmp_path):
    rows = [{"method": "dcft", "kernel": 8, "stride": 8, "impl": "fast", "phase": "train", "via": "harness",
             "step_s_median": 0.5, "ratio_to_lora": 1.1, "ratio_to_lora_q1": 1.0, "ratio_to_lora_q3": 1.2},
            {"method": "dcft", "kernel": 8, "stride": 8, "impl": "fast", "phase": "train", "via": "peft",
             "step_s_median": 0.6, "ratio_to_lora": 1.2},
            {"method": "lora", "kernel": None, "stride": None, "impl": None, "phase": "train", "via": None,
             "step_s_median": 0.45, "ratio_to_lora": 1.0}]
    (tmp_path / "b.json").write_text(json.dumps({"rows": rows}))
    assert bench_times(tmp_path / "b.json") == {(8, 8, "fast"): (0.5, 1.1, 1.0, 1.2)}
    assert bench_times(tmp_path / "none.json") == {}


def _one_budget(tmp: Path):
    write_study(tmp, tasks={"sst2": {**STUDY["tasks"]["sst2"], "budgets": [1000]}},
                report={"table1": {"groups": ["core"], "title": "T"}, "pareto": {"groups": ["core"]}})
    root = tmp / "runs"
    for lr, h in ((3e-4, 0.85), (8e-4, 0.90), (2e-3, 0.88)):
        result(root, "dcft8", 1000, lr, 6, h, 0.84, params=7488)
    return root


def test_params_of_a_cell_are_its_own_runs_mean_and_range(tmp_path):
    """A cell's #Params: the mean of the live counts of its three runs, 73,000 (60,000 to 89,000), not a
    tuning run's at another rate (211,385)."""
    root = _one_budget(tmp_path)
    for lr, h, live in ((1e-4, 0.80, 211_385), (3e-4, 0.86, 60_000), (8e-4, 0.84, 211_385)):
        result(root, "lora", 1000, lr, 6, h, 0.85, params=live)
    for seed, live in ((7, 70_000), (8, 89_000)):
        result(root, "lora", 1000, 3e-4, seed, 0.5, 0.85, params=live)
    d = Decisions(load(tmp_path / "study.yaml"), load_runs(root).usable)
    res = write_tables(d, tmp_path / "t")
    row = next(line for line in (tmp_path / "t" / "table1.csv").read_text().splitlines() if line.startswith("LoRA"))
    assert row.startswith('LoRA,"73,000 (60,000 to 89,000)",85.00 ± 0.00 @ 3.0e-04')
    (pt,) = [p for p in pareto_points(d, "sst2", res["cells"]) if p[-1] == "LoRA"]
    assert pt[:3] == (73_000, 60_000, 89_000)


def _reported(d: Decisions, out: Path) -> set[str]:
    """The runs behind the report's cells, as the report finds them: cells.csv's rows."""
    from dcft.study.report import ablation_rows, frontier_cells, write_cells

    res = write_tables(d, out)
    return write_cells(d, out, res["cell_rows"], ablation_rows(d, res["cells"]), retuned_cells(d), frontier_cells(d))


def test_the_report_lists_the_verdicts_that_rest_on_the_tie_rule(tmp_path):
    """DCFT k8 and LoRA, seeds 6, 7, 8. LoRA dev 86.0, 86.2, 85.8. DCFT k8 dev 84.0, 84.2 and, for seed 8, a
    held-out tie at steps 500 (dev 84.0) and 900 (dev 87.0). Earliest: differences -2.0, -2.0, -1.8, mean
    -1.93, sd 0.115, 95 % half-width 4.303 x 0.115 / sqrt 3 = 0.29: beyond noise. Latest: -2.0, -2.0, +1.2,
    mean -0.93, sd 1.85, half-width 4.59: within noise."""
    root = _one_budget(tmp_path)
    for lr, h in ((1e-4, 0.80), (3e-4, 0.86), (8e-4, 0.84)):
        result(root, "lora", 1000, lr, 6, h, 0.860 if lr == 3e-4 else 0.5)
    for seed, dev in ((7, 0.862), (8, 0.858)):
        result(root, "lora", 1000, 3e-4, seed, 0.5, dev)
    tie = [{"step": 500, "score": 0.87, "validation/accuracy": 0.840, "holdout/accuracy": 0.87},
           {"step": 700, "score": 0.85, "validation/accuracy": 0.850, "holdout/accuracy": 0.85},
           {"step": 900, "score": 0.87, "validation/accuracy": 0.870, "holdout/accuracy": 0.87}]
    for seed, dev in ((7, 0.842), (8, 0.840)):
        result(root, "dcft8", 1000, 8e-4, seed, 0.87, dev, history=tie if seed == 8 else None)
    study = load(tmp_path / "study.yaml")
    study = type(study)(**{**study.__dict__, "report": {**study.report, "paired": {"settings": ["dcft8"],
                                                                                     "against": ["lora"]}}})
    d = Decisions(study, load_runs(root).usable)
    assert table1_cells(d)[("sst2", "dcft8")][1].values == {6: 84.0, 7: 84.2, 8: 84.0}
    changed = write_tie_rule(d, tmp_path / "t", _reported(d, tmp_path / "t"))
    assert changed == [("sst2", "paired", "DCFT k8 - LoRA")]
    text = (tmp_path / "t" / "tie_rule.md").read_text(encoding="utf-8")
    assert "| sst2 | paired | DCFT k8 - LoRA | -1.93 [-2.22, -1.65] exceeds noise | -0.93 [-5.52, +3.66] " \
           "within noise | yes |" in text
    assert "DCFT k8 on sst2 84.07 -> 85.07" in text  # (84.0 + 84.2 + 87.0) / 3
    # the claim "DCFT k8 as good as LoRA" (margin 1): earliest, the 95 % interval lies beyond -1: not
    # supported; latest, [-5.52, +3.66] reaches over both ends of the margin: inconclusive
    (row,) = write_claims(d, tmp_path / "t")
    assert row[0] == "k8_vs_lora" and row[-2:] == ["not supported", "inconclusive"]


def test_a_tie_behind_a_frontier_cell_counts_as_behind_a_reported_cell(tmp_path):
    """LoRA qv is only a frontier point: its grid (1e-4, 3e-4, 8e-4 around LoRA's selected 3e-4) selects
    3e-4, and its seed-8 run ties at steps 500 (dev 84.0) and 900 (dev 87.0). That run is the one tie with
    different dev scores, and it is behind a reported cell (the frontier's, in cells.csv)."""
    root = _one_budget(tmp_path)
    for lr, h in ((1e-4, 0.80), (3e-4, 0.86), (8e-4, 0.84)):
        result(root, "lora", 1000, lr, 6, h, 0.85)
        result(root, "lora_qv", 1000, lr, 6, h, 0.85)
    tie = [{"step": 500, "score": 0.87, "validation/accuracy": 0.840, "holdout/accuracy": 0.87},
           {"step": 900, "score": 0.87, "validation/accuracy": 0.870, "holdout/accuracy": 0.87}]
    for seed in (7, 8):
        result(root, "lora_qv", 1000, 3e-4, seed, 0.87, 0.84, history=tie if seed == 8 else None)
    study = load(tmp_path / "study.yaml")
    study = type(study)(**{**study.__dict__, "report": {**study.report,
                                                        "frontier": {"lora": ["lora_qv"], "dcft": ["dcft8"]}}})
    d = Decisions(study, load_runs(root).usable)
    write_tie_rule(d, tmp_path / "t", _reported(d, tmp_path / "t"))
    text = (tmp_path / "t" / "tie_rule.md").read_text(encoding="utf-8")
    assert "1 of the 11 runs reach their highest held-out score at more than one evaluation, 1 of them with " \
           "different dev scores at the tied steps (1 behind a reported cell: cells.csv)" in text


def _check(diffs: list[float]):
    """A finished budget check whose 2x - 1x differences, seed by seed, are `diffs`."""
    from dcft.study.planner import Check
    from dcft.study.spec import Setting

    base = Cell({6: 80.0, 7: 81.0, 8: 82.0}, [])
    doubled = Cell({s: base.values[s] + x for s, x in zip((6, 7, 8), diffs)}, [])
    return Check("sst2", Setting("full", "Full FT", "full"), 500, 2, 1e-4, base, doubled, 3)


@pytest.mark.parametrize("diffs, words", [
    # mean +0.2, sd 0.1, se 0.0577: 95 % [-0.048, +0.448] holds 0; 90 % (t 2.920) [+0.031, +0.369] inside +-1
    ([0.2, 0.3, 0.1], ("passed", "supported", "converged")),
    # mean +1.0, sd 0.5, se 0.2887: 95 % [-0.242, +2.242] holds 0; 90 % [+0.157, +1.843] crosses +1
    ([1.0, 1.5, 0.5], ("passed", "inconclusive", "inconclusive")),
    # mean +3.0, sd 0.2: 95 % [+2.50, +3.50] above 0 (and beyond the margin)
    ([3.0, 3.2, 2.8], ("failed", "not supported", "not converged")),
])
def test_a_budget_converges_only_inside_its_margin(diffs, words):
    """The gate (interval holds 0) is not enough to say "converged": seed spread alone passes it."""
    from dcft.study.report import convergence_verdict

    assert convergence_verdict(_check(diffs), 1.0) == words


def test_the_end_of_curve_slope_is_last_n_minus_the_n_before():
    from dcft.study.report import end_slope

    curve = [(100, 1.0), (200, 2.0), (300, 3.0), (400, 5.0), (500, 6.0), (600, 10.0)]
    assert end_slope(curve, 3) == pytest.approx((5 + 6 + 10) / 3 - (1 + 2 + 3) / 3)  # 7 - 2
    assert end_slope(curve, 2) == pytest.approx((6 + 10) / 2 - (3 + 5) / 2)
    assert end_slope(curve[:5], 3) is None  # 5 evaluations: no slope of 3


def test_a_retuned_variant_is_shown_at_both_rates_and_whether_its_side_moved(tmp_path):
    """DCFT k8 (parent) at 8e-4: dev 84.0, 84.2, 84.4. DCFT k4 at 8e-4: 83.0, 83.3, 83.3, differences -1.0,
    -0.9, -1.1: mean -1.00, sd 0.10, 95 % half-width 4.303 x 0.1 / sqrt 3 = 0.25: below. Its own grid
    around 8e-4 (3e-4, 8e-4, 2e-3; held-out 0.80, 0.85, 0.88: the top edge) grows to 5e-3 (0.86), so 2e-3
    is selected; there 84.5, 84.0, 85.0: differences +0.5, -0.2, +0.6, mean +0.30, sd 0.436, half-width
    1.08: level. The side moved with the rate."""
    root = _one_budget(tmp_path)
    groups = {**STUDY["groups"], "kernel_retuned": {"settings": ["dcft4"], "tasks": ["sst2"],
                                                    "rate": {"around": "dcft8"}, "parent": "dcft8"}}
    write_study(tmp_path, tasks={"sst2": {**STUDY["tasks"]["sst2"], "budgets": [1000]}}, groups=groups,
                report={"table1": {"groups": ["core"]}, "retuned": {"groups": ["kernel_retuned"]}})
    for seed, dev in ((7, 0.842), (8, 0.844)):
        result(root, "dcft8", 1000, 8e-4, seed, 0.5, dev)
    for seed, dev in ((6, 0.830), (7, 0.833), (8, 0.833)):
        result(root, "dcft4", 1000, 8e-4, seed, 0.85, dev)
    for lr, h in ((3e-4, 0.80), (5e-3, 0.86)):
        result(root, "dcft4", 1000, lr, 6, h, 0.5)
    for seed, dev in ((6, 0.845), (7, 0.840), (8, 0.850)):
        result(root, "dcft4", 1000, 2e-3, seed, 0.88, dev)
    d = Decisions(load(tmp_path / "study.yaml"), load_runs(root).usable)
    (row,) = retuned_rows(d, retuned_cells(d))
    assert row == ["sst2", "DCFT k4", "1,000", "8.0e-04", "83.20 ± 0.17", "-1.00 ± 0.10", "[-1.25, -0.75]", "below",
                   "2.0e-03", "84.50 ± 0.50", "+0.30 ± 0.44", "[-0.78, +1.38]", "level", "yes"]
    report(d.study, root, tmp_path / "out")
    cells = (tmp_path / "out" / "tables" / "cells.csv").read_text(encoding="utf-8")
    assert "sst2,retuned: own rate,DCFT k4,2.0e-03,84.5000,0.5000,3," in cells
    assert "| moved |" in (tmp_path / "out" / "tables" / "retuned.md").read_text(encoding="utf-8")


def test_a_retuned_variant_without_its_own_grid_says_so(tmp_path):
    """Before its grid has run, the own-rate half of the row is empty and nothing is judged."""
    root = _one_budget(tmp_path)
    groups = {**STUDY["groups"], "kernel_retuned": {"settings": ["dcft4"], "tasks": ["sst2"],
                                                    "rate": {"around": "dcft8"}, "parent": "dcft8"}}
    write_study(tmp_path, tasks={"sst2": {**STUDY["tasks"]["sst2"], "budgets": [1000]}}, groups=groups,
                report={"retuned": {"groups": ["kernel_retuned"]}})
    result(root, "dcft4", 1000, 3e-4, 6, 0.80, 0.5)
    d = Decisions(load(tmp_path / "study.yaml"), load_runs(root).usable)
    (row,) = retuned_rows(d, retuned_cells(d))
    assert row[8:] == ["grid running (best so far 3.0e-04)", "-", "-", "-", "-", "-"]


def test_compute_is_split_by_the_day_each_edition_began(tmp_path):
    """Three runs of an hour each, two runs side by side: 1.50 hours of the machine; the one started on
    2026-12-03 is edition 1 (0.50 h), the two from 2026-12-07 edition 2 (1.00 h)."""
    from dcft.study.report import write_compute

    root = _one_budget(tmp_path)  # DCFT k8 at three rates, seed 6
    for folder, day in zip(sorted((root / "minilm" / "sst2" / "dcft").iterdir()),
                           ("2026-12-03T09:00:00+0000", "2026-12-07T10:00:00+0000", "2026-12-07T23:00:00+0000")):
        rec = json.loads((folder / "result.json").read_text())
        rec.update(started_at=day, wall_time_s=3600.0)
        (folder / "result.json").write_text(json.dumps(rec))
    study = load(tmp_path / "study.yaml")
    study = type(study)(**{**study.__dict__, "report": {"compute": {"side_by_side": 2, "editions": {2: "2026-12-07"}}}})
    assert write_compute(Decisions(study, load_runs(root).usable), tmp_path / "t") == 1.5
    text = (tmp_path / "t" / "compute.md").read_text(encoding="utf-8")
    assert ("by edition (report.compute.editions): edition 1 (the earlier runs): 1 runs, 0.50 hours of the machine; "
            "edition 2 (runs started from 2026-12-07): 2 runs, 1.00 hours of the machine.") in text


def test_the_frontier_table_lists_every_point_with_its_grids_state(tmp_path):
    """DCFT k8 selected 8e-4 (held-out 0.90 in the middle of its grid), dev 84.0, 84.2, 84.4 (mean 84.20,
    std 0.20), 7,488 parameters; LoRA qv's grid is centred on LoRA's selected rate, which has no runs."""
    from dcft.study.report import frontier_cells, write_frontier_table

    root = _one_budget(tmp_path)
    for seed, dev in ((7, 0.842), (8, 0.844)):
        result(root, "dcft8", 1000, 8e-4, seed, 0.5, dev, params=7488)
    study = load(tmp_path / "study.yaml")
    study = type(study)(**{**study.__dict__, "report": {"frontier": {"lora": ["lora_qv"], "dcft": ["dcft8"]}}})
    d = Decisions(study, load_runs(root).usable)
    write_frontier_table(d, tmp_path / "t", frontier_cells(d))
    lines = (tmp_path / "t" / "frontier.csv").read_text(encoding="utf-8").splitlines()
    assert lines == ["task,curve,setting,#Params,rate,dev", "sst2,lora,LoRA qv,-,grid not run yet,-",
                     'sst2,dcft,DCFT k8,"7,488",8.0e-04,84.20 ± 0.20']


def test_the_summary_row_of_a_task_by_hand(tmp_path):
    """DCFT k8 84.0, 84.2, 84.4 (7,488 parameters) against LoRA 85.0, 85.3, 85.5 (mean 85.27, std 0.25):
    differences -1.0, -1.1, -1.1, mean -1.067, std 0.0577; 95 % half-width 4.303 x 0.0577 / sqrt 3 = 0.143,
    [-1.21, -0.92]: it crosses the -1 margin, and the 90 % interval [-1.16, -0.97] is not inside +-1, so
    as_good_as is inconclusive. No budget check has run."""
    from dcft.study.report import summary_rows

    root = _one_budget(tmp_path)
    for seed, dev in ((7, 0.842), (8, 0.844)):
        result(root, "dcft8", 1000, 8e-4, seed, 0.5, dev, params=7488)
    for lr, h in ((1e-4, 0.80), (3e-4, 0.86), (8e-4, 0.84)):
        result(root, "lora", 1000, lr, 6, h, 0.850 if lr == 3e-4 else 0.5)
    for seed, dev in ((7, 0.853), (8, 0.855)):
        result(root, "lora", 1000, 3e-4, seed, 0.5, dev)
    study = load(tmp_path / "study.yaml")
    study = type(study)(**{**study.__dict__, "report": {"summary": {"claim": "k8_vs_lora"}}})
    assert summary_rows(Decisions(study, load_runs(root).usable)) == [
        ["sst2", "accuracy", "1000 steps", "84.20 ± 0.20 (7,488)", "85.27 ± 0.25 (1,000)", "-1.07 [-1.21, -0.92]",
         "inconclusive (±1)", "not checked yet"]]


def test_the_cpu_study_readme_shows_the_committed_summary_table():
    """The README's first table is the report's summary.md, line for line (no hand-copied number)."""
    readme = (COMMITTED / "README.md").read_text(encoding="utf-8")
    table = [line for line in (COMMITTED / "tables" / "summary.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("|")]
    assert len(table) >= 6  # header, rule, four tasks
    assert "\n".join(table) in readme


def test_an_also_setting_left_unchecked_on_a_task_is_listed_with_its_slope(tmp_path):
    """budget_check.also_tasks names rte only, so LoRA (an `also` setting, not SST-2's gate: DCFT k8's 0.90
    beats LoRA's 0.86) has no check on SST-2; the convergence table still lists it there, not checked, with
    its end-of-curve slope. LoRA's curves at 3e-4 (x100, steps 100-600): seed 6 80 82 84 85 86 87, seed 7
    81 83 84 86 86 88, seed 8 79 81 83 85 87 87; means 80, 82, 83.67, 85.33, 86.33, 87.33: the last three's
    mean 86.33 minus the three before's 81.89 = +4.44. Best dev 87, 88, 87: 87.33 ± 0.58."""
    from dcft.study.report import write_convergence

    root = _one_budget(tmp_path)
    write_study(tmp_path, tasks={"sst2": {**STUDY["tasks"]["sst2"], "budgets": [1000]},
                                 "rte": {**STUDY["tasks"]["sst2"], "budgets": [500]}},
                budget_check={**STUDY["budget_check"], "also_tasks": ["rte"]})
    curves = {6: (80, 82, 84, 85, 86, 87), 7: (81, 83, 84, 86, 86, 88), 8: (79, 81, 83, 85, 87, 87)}
    for lr, h in ((1e-4, 0.80), (8e-4, 0.84)):
        result(root, "lora", 1000, lr, 6, h, 0.5)
    for seed, values in curves.items():
        history = [{"step": 100 * (i + 1), "validation/accuracy": v / 100} for i, v in enumerate(values)]
        result(root, "lora", 1000, 3e-4, seed, 0.86, max(values) / 100, history=history)
    d = Decisions(load(tmp_path / "study.yaml"), load_runs(root).usable)
    write_convergence(d, tmp_path / "t")
    lines = (tmp_path / "t" / "convergence.csv").read_text(encoding="utf-8").splitlines()
    assert lines[1:] == ["sst2,LoRA,3.0e-04,1000,87.33 ± 0.58,-,-,-,-,+4.44,-,±1,-,-,not checked"]


def test_what_a_groups_skip_leaves_out_is_named_in_the_tables_notes(tmp_path):
    """The frontier group skips LoRA qv on rte: the note names it there; restricted to DCFT k8, nothing."""
    from dcft.study.report import skipped_note

    groups = {**STUDY["groups"], "core": {**STUDY["groups"]["core"], "tasks": ["sst2", "rte"]},
              "frontier": {**STUDY["groups"]["frontier"], "tasks": ["sst2", "rte"], "skip": {"rte": ["lora_qv"]}}}
    write_study(tmp_path, tasks={**STUDY["tasks"], "rte": STUDY["tasks"]["sst2"]}, groups=groups)
    study = load(tmp_path / "study.yaml")
    assert skipped_note(study, ["core", "frontier"]) == ["Left out: LoRA qv on rte (groups.frontier.skip)."]
    assert skipped_note(study, ["core", "frontier"], among=["dcft8"]) == []
