"""The study protocol (`dcft.study.planner`) on result files written here: what it plans next and what
it selected, each answer worked out by hand from the fixture's numbers.

The fixture study (study_fixtures.STUDY) on SST-2 with the CPU preset: LoRA's source rate is 3e-4 (grid two
ladder places either side: 1e-4, 3e-4, 8e-4), DCFT's 8e-4 (3e-4, 8e-4, 2e-3); budgets 500 then 1000."""

from __future__ import annotations

import pytest

from study_fixtures import result, write_study
from dcft.study.planner import Decisions, planned_runs
from dcft.study.spec import load
from dcft.report.tables import load_runs


def plan(tmp):
    study = load(tmp / "study.yaml")
    runs = load_runs(tmp / "runs").usable
    return Decisions(study, runs), planned_runs(study, runs)


def todo(runs, **match):
    return sorted((r["setting"], r["steps"], r["lr"], r["seed"]) for r in runs
                  if all(r[k] == v for k, v in match.items()))


def grids_at_500(root, lora=(0.80, 0.85, 0.83), dcft=(0.84, 0.90, 0.86)):
    for lr, h in zip((1e-4, 3e-4, 8e-4), lora):
        result(root, "lora", 500, lr, 6, h, h - 0.05)
    for lr, h in zip((3e-4, 8e-4, 2e-3), dcft):
        result(root, "dcft8", 500, lr, 6, h, h - 0.05)


@pytest.fixture
def tmp(tmp_path):
    write_study(tmp_path)
    return tmp_path


def test_first_the_core_grids_around_the_source_rates(tmp):
    d, runs = plan(tmp)
    assert todo(runs) == sorted([("lora", 500, lr, 6) for lr in (1e-4, 3e-4, 8e-4)]
                                + [("dcft8", 500, lr, 6) for lr in (3e-4, 8e-4, 2e-3)])
    r = next(r for r in runs if r["setting"] == "dcft8")
    assert r["overrides"]["kernel"] == 8 and r["overrides"]["method"] == "dcft"
    assert r["overrides"]["train.max_steps"] == 500 and r["overrides"]["model"] == "minilm"


def test_a_rate_at_the_grid_edge_extends_the_grid_at_most_twice(tmp):
    grids_at_500(tmp / "runs", lora=(0.80, 0.85, 0.90))  # LoRA best at its largest rate, 8e-4
    d, runs = plan(tmp)
    assert todo(runs, setting="lora") == [("lora", 500, 2e-3, 6)]  # two ladder places above 8e-4
    result(tmp / "runs", "lora", 500, 2e-3, 6, 0.91, 0.86)
    d, runs = plan(tmp)
    assert todo(runs, setting="lora") == [("lora", 500, 5e-3, 6)]
    result(tmp / "runs", "lora", 500, 5e-3, 6, 0.92, 0.87)
    d, runs = plan(tmp)
    sel = d.selection("sst2", "lora", 500)
    assert (sel.state, sel.lr, sel.edge) == ("selected", 5e-3, "high")  # extended twice: no more
    assert ("lora", 500, 1.0e-2, 6) not in todo(runs)


def test_equal_held_out_scores_go_to_the_smaller_rate(tmp):
    grids_at_500(tmp / "runs", lora=(0.80, 0.86, 0.86))
    d, _ = plan(tmp)
    sel = d.selection("sst2", "lora", 500)
    assert (sel.state, sel.lr, sel.edge) == ("selected", 3e-4, None)


def test_the_gate_is_the_best_core_setting_on_held_out_at_every_seed_and_twice_the_steps(tmp):
    grids_at_500(tmp / "runs")  # LoRA best 0.85 at 3e-4; DCFT k8 best 0.90 at 8e-4: the gate
    d, runs = plan(tmp)
    assert todo(runs) == [("dcft8", 500, 8e-4, 7), ("dcft8", 500, 8e-4, 8),
                          ("dcft8", 1000, 8e-4, 6), ("dcft8", 1000, 8e-4, 7), ("dcft8", 1000, 8e-4, 8)]
    assert {r["stage"] for r in runs} == {"budget_check"}


def _check(root, steps, base, doubled):
    for seed, (a, b) in enumerate(zip(base, doubled), start=6):
        if seed != 6 or steps != 500:
            result(root, "dcft8", steps, 8e-4, seed, 0.9, a / 100)
        result(root, "dcft8", 2 * steps, 8e-4, seed, 0.9, b / 100)


def test_a_short_budget_moves_the_plan_on_around_its_selected_rates(tmp):
    grids_at_500(tmp / "runs")
    # dev at 500: seed 6 0.85 (from the grid), 80, 81; at 1000: 88, 83, 84.
    # differences +3, +3, +3: std 0, interval [+3, +3]: not converged
    _check(tmp / "runs", 500, (85.0, 80.0, 81.0), (88.0, 83.0, 84.0))
    d, runs = plan(tmp)
    assert d.gate("sst2", 500).verdict == "not converged"
    # the 1000-step grids around the 500-step choices; DCFT's 8e-4 seed 6 at 1000 ran in the check
    assert todo(runs) == sorted([("lora", 1000, lr, 6) for lr in (1e-4, 3e-4, 8e-4)]
                                + [("dcft8", 1000, lr, 6) for lr in (3e-4, 2e-3)])


def converged_at_1000(root):
    """500 steps short (above); at 1000: LoRA best at 3e-4 (held-out 0.86), DCFT k8 at 8e-4 (0.9, from the
    check), grids finished; the check at 2000 steps: differences +1, -1, +0.5, interval contains 0."""
    grids_at_500(root)
    _check(root, 500, (85.0, 80.0, 81.0), (88.0, 83.0, 84.0))
    for lr, h in ((1e-4, 0.80), (3e-4, 0.86), (8e-4, 0.84)):
        result(root, "lora", 1000, lr, 6, h, 0.8)
    for lr, h in ((3e-4, 0.85), (2e-3, 0.88)):
        result(root, "dcft8", 1000, lr, 6, h, 0.8)
    for seed, dev in ((6, 0.89), (7, 0.82), (8, 0.845)):
        result(root, "dcft8", 2000, 8e-4, seed, 0.9, dev)


def test_a_converged_check_opens_seeds_also_checks_and_the_groups(tmp):
    converged_at_1000(tmp / "runs")
    d, runs = plan(tmp)
    assert d.gate("sst2", 1000).verdict == "converged" and d.gate("sst2", 1000).setting.name == "dcft8"
    assert todo(runs, stage="seeds", group="core") == [("lora", 1000, 3e-4, 7), ("lora", 1000, 3e-4, 8)]
    # budget_check.also: LoRA at its own rate at 2000 steps (its 1000-step seeds are the core seeds above)
    assert todo(runs, stage="also_check") == [("lora", 2000, 3e-4, s) for s in (6, 7, 8)]
    # {of: dcft8}: DCFT k4 at DCFT k8's rate, every seed, untuned
    assert todo(runs, group="kernel") == [("dcft4", 1000, 8e-4, s) for s in (6, 7, 8)]
    # {around: lora}: LoRA qv's own grid centred on LoRA's 3e-4
    assert todo(runs, group="frontier") == [("lora_qv", 1000, lr, 6) for lr in (1e-4, 3e-4, 8e-4)]
    r = next(r for r in runs if r["setting"] == "lora_qv")
    assert r["overrides"]["targets"] == "qv"


def test_around_is_tuned_of_is_not(tmp):
    root = tmp / "runs"
    converged_at_1000(root)
    for lr, h in ((1e-4, 0.70), (3e-4, 0.75), (8e-4, 0.80)):  # LoRA qv: best at its high edge
        result(root, "lora_qv", 1000, lr, 6, h, 0.7)
    for seed in (6, 7, 8):
        result(root, "dcft4", 1000, 8e-4, seed, 0.5, 0.5)
    d, runs = plan(tmp)
    assert todo(runs, group="frontier") == [("lora_qv", 1000, 2e-3, 6)]  # extended like any tuned grid
    assert todo(runs, group="kernel") == []  # done at DCFT k8's rate; never tuned
    assert d.rate("sst2", "dcft4") == 8e-4


@pytest.mark.parametrize("last_short", ["stop", "report"])
def test_a_short_last_budget_stops_the_task_or_goes_on_marked(tmp_path, capsys, last_short):
    """One budget (500): the check's differences +3, +3, +3 fail the gate. `stop` plans nothing more and
    says to add a budget; `report` plans the core seeds (LoRA at its 3e-4; DCFT k8's are the check's) and
    the rest as after a passed check, and the task counts as short."""
    from study_fixtures import STUDY

    write_study(tmp_path, tasks={"sst2": {**STUDY["tasks"]["sst2"], "budgets": [500]}},
                budget_check={**STUDY["budget_check"], "last_short": last_short}, report={"table1": {"groups": ["core"]}})
    grids_at_500(tmp_path / "runs")
    _check(tmp_path / "runs", 500, (85.0, 80.0, 81.0), (88.0, 83.0, 84.0))
    d, runs = plan(tmp_path)
    assert d.gate("sst2", 500).verdict == "not converged" and d.short("sst2")
    err = capsys.readouterr().err
    if last_short == "stop":
        assert runs == [] and "add a longer budget to tasks.sst2.budgets (now [500])" in err
    else:
        assert "the report marks sst2 not converged" in err
        assert todo(runs, stage="seeds", group="core") == [("lora", 500, 3e-4, 7), ("lora", 500, 3e-4, 8)]
        assert todo(runs, group="kernel") == [("dcft4", 500, 8e-4, s) for s in (6, 7, 8)]
    from dcft.study.report import write_tables

    write_tables(d, tmp_path / "t")  # the table says where its cells stand, whatever the plan did
    assert (tmp_path / "t" / "table1.csv").read_text().splitlines()[0] == "setting,#Params,sst2 (not converged)"


@pytest.mark.parametrize("last_short", ["stop", "report"])
def test_at_the_last_budget_report_plans_the_rest_while_the_check_runs(tmp_path, last_short):
    """One budget (500), grids done, the gate's check not run yet. `stop` waits for it (its outcome decides
    whether anything more runs); `report` goes on at 500 whatever it says, so the core seeds and the groups
    are planned beside the check's runs."""
    from study_fixtures import STUDY

    write_study(tmp_path, tasks={"sst2": {**STUDY["tasks"]["sst2"], "budgets": [500]}},
                budget_check={**STUDY["budget_check"], "last_short": last_short})
    grids_at_500(tmp_path / "runs")
    d, runs = plan(tmp_path)
    assert d.gate("sst2", 500).verdict == "running"
    check = [("dcft8", 500, 8e-4, 7), ("dcft8", 500, 8e-4, 8)] + [("dcft8", 1000, 8e-4, s) for s in (6, 7, 8)]
    assert todo(runs, stage="budget_check") == check
    if last_short == "stop":
        assert len(runs) == len(check)
    else:
        assert todo(runs, stage="seeds", group="core") == [("lora", 500, 3e-4, 7), ("lora", 500, 3e-4, 8)]
        assert todo(runs, group="kernel") == [("dcft4", 500, 8e-4, s) for s in (6, 7, 8)]
        assert todo(runs, stage="also_check") == [("lora", 1000, 3e-4, s) for s in (6, 7, 8)]


def test_also_checks_run_only_on_the_also_tasks(tmp_path):
    """budget_check.also_tasks names rte only: with SST-2 converged, LoRA's check at 2000 steps is not
    planned there (the seeds and groups are)."""
    from study_fixtures import STUDY

    write_study(tmp_path, tasks={**STUDY["tasks"], "rte": {**STUDY["tasks"]["sst2"], "budgets": [500]}},
                budget_check={**STUDY["budget_check"], "also_tasks": ["rte"]})
    converged_at_1000(tmp_path / "runs")
    d, runs = plan(tmp_path)
    assert d.also_checks("sst2") == [] and todo(runs, stage="also_check") == []
    assert todo(runs, stage="seeds", group="core") == [("lora", 1000, 3e-4, 7), ("lora", 1000, 3e-4, 8)]


def test_a_setting_a_group_skips_on_a_task_is_neither_planned_nor_gated(tmp_path):
    """core skips DCFT k8 on sst2: only LoRA's grid runs, and the gate (the best core setting) is LoRA even
    though DCFT k8 has runs with a higher held-out score."""
    from study_fixtures import STUDY

    groups = {"core": {**STUDY["groups"]["core"], "skip": {"sst2": ["dcft8"]}}, "frontier": STUDY["groups"]["frontier"]}
    write_study(tmp_path, groups=groups, claims=[])
    d, runs = plan(tmp_path)
    assert d.study.core("sst2") == ["lora"]
    assert todo(runs) == [("lora", 500, lr, 6) for lr in (1e-4, 3e-4, 8e-4)]
    grids_at_500(tmp_path / "runs")  # DCFT k8's best 0.90 beats LoRA's 0.85, but it is not in the core here
    d, runs = plan(tmp_path)
    assert d.gate("sst2", 500).setting.name == "lora"
    assert {r["setting"] for r in runs} == {"lora"}
