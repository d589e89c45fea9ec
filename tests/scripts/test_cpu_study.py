"""The CPU study: its configs against the sources' numbers typed here by hand, and its
stage planner (`dcft.study`) against made-up run records whose right answer is worked out here.

Sources of the hand-typed values: the authors' DeBERTaV3-base SST-2 script (lr 8e-4, 24 epochs,
1000 warm-up steps, batch 32: 24 x ceil(67349 / 32) = 50,520 steps), SoRA's run_glue_lora.sh (LoRA:
warm-up ratio 0.06, weight decay 0.1, clip 0.1), the DeBERTa repository's cola.sh (full: 6 epochs,
100 warm-up steps: 6 x ceil(8551 / 32) = 1,608 steps, lr 2e-5)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, compose_cfg
from dcft import study as S
from dcft.harness.identity import flatten


def _generator():
    spec = importlib.util.spec_from_file_location("cpu_study", ROOT / "scripts" / "cpu_study.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen
    spec.loader.exec_module(gen)
    return gen


def test_committed_files_are_what_the_generator_writes():
    planned = _generator().planned_files()
    for path, text in planned.items():
        assert path.read_text(encoding="utf-8") == text, path
    assert set(S.SWEEP_DIR.glob("**/tune_*.yaml")) == {p for p in planned if p.name.startswith("tune_")}


def test_dcft_on_sst2_has_the_authors_settings_and_the_cpu_budget():
    cfg = compose_cfg(["model=minilm", "preset=cpu", "task=sst2", "method=dcft", "kernel=8"])
    t = cfg.train
    assert (t.lr, t.batch_size, t.max_steps, t.cls_dropout, t.weight_decay) == (8e-4, 32, 1000, 0.0, 0.01)
    assert t.warmup_steps == 0 and t.warmup_ratio == pytest.approx(1000 / 50520, abs=1e-4)
    assert t.group_by_length is True and cfg.data.holdout == 0.01
    assert (cfg.method.alpha, cfg.method.r, cfg.method.reg_orth_coef) == (16.0, 2.0, 0.1)


def test_lora_on_sst2_has_its_own_source_settings_and_the_same_budget():
    cfg = compose_cfg(["model=minilm", "preset=cpu", "task=sst2", "method=lora"])
    t = cfg.train
    assert (t.lr, t.warmup_ratio, t.weight_decay, t.max_grad_norm) == (3e-4, 0.06, 0.1, 0.1)
    assert (t.batch_size, t.max_steps, cfg.data.holdout) == (32, 1000, 0.01)  # the task's, as DCFT's
    assert (cfg.method.r, cfg.method.targets) == (1, "all")


def test_full_finetuning_on_cola_keeps_its_warmup_fraction():
    cfg = compose_cfg(["model=minilm", "preset=cpu", "task=cola", "method=full"])
    assert cfg.train.lr == 2e-5 and cfg.train.warmup_ratio == pytest.approx(100 / 1608, abs=1e-4)
    assert (cfg.train.adam_eps, cfg.train.cls_dropout, cfg.train.max_steps) == (1e-6, 0.15, 1200)


@pytest.mark.parametrize("rate, grid", [(8e-4, [3e-4, 8e-4, 2e-3]), (2.2e-3, [1e-3, 2.2e-3, 5e-3]),
                                        (2e-5, [8e-6, 2e-5, 5e-5]), (3e-4, [1e-4, 3e-4, 8e-4]),
                                        (1.2e-3, [8e-4, 1.2e-3, 3e-3])])
def test_lr_grid_is_two_ladder_steps_either_side(rate, grid):
    assert S.lr_grid(rate) == pytest.approx(grid)


# ---- the stage planner, on made-up runs -------------------------------------------------------------
def _run(task, method, lr, seed, holdout, dev, steps=None, **method_keys):
    m = {"name": method, **method_keys}
    if method == "dcft":
        m = {"name": "dcft", "kernel": 8, "stride": None, "targets": "all", "init": "normal", **method_keys}
        m["stride"] = m["stride"] or m["kernel"]
    declared = {"method": m, "seed": seed, "train": {"max_steps": steps or S.BUDGET[task]["max_steps"], "lr": lr}}
    return {"task": task, "method": method, "lr": lr, "seed": seed, "selection_score": holdout,
            "run": f"{task}/{method}/{lr}/{seed}", "best": {f"validation/{S.METRIC[task]}": dev},
            "declared": declared, "facts": flatten({"declared": declared})}  # as dcft.report.tables.normalise gives them


@pytest.fixture
def budget500(monkeypatch):
    """One budget per task, SST-2 at 500 steps and CoLA at 600, none checked before."""
    monkeypatch.setitem(S.BUDGET, "sst2", {**S.BUDGET["sst2"], "max_steps": 500})
    monkeypatch.setitem(S.BUDGET, "cola", {**S.BUDGET["cola"], "max_steps": 600})
    monkeypatch.setattr(S, "EARLIER_STEPS", {})


@pytest.fixture
def sweeps(tmp_path, monkeypatch, budget500):
    monkeypatch.setattr(S, "SWEEP_DIR", tmp_path)
    lora = S.Setting("lora", "LoRA", "lora")
    (tmp_path / "tune_sst2_lora.yaml").write_text(S.sweep_yaml("tune_sst2_lora", [], "sst2", lora,
                                                                [1e-4, 3e-4, 8e-4], (6,)))
    return tmp_path


def test_planner_waits_for_the_grid_then_checks_the_budget_at_the_held_out_choice(sweeps):
    runs = [_run("sst2", "lora", 1e-4, 6, 0.80, 0.70), _run("sst2", "lora", 3e-4, 6, 0.90, 0.60)]
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/tune_sst2_lora"]  # 8e-4 missing
    runs.append(_run("sst2", "lora", 8e-4, 6, 0.85, 0.95))  # best dev, but dev never selects
    # the only core setting with a grid is the best: its seeds, then its budget at 2 x 500 steps
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/seeds_sst2_lora", "cpu/double_sst2"]
    assert [(lr, seed) for lr, seed, _ in S.sweep_runs(sweeps / "seeds_sst2_lora.yaml")] == [(3e-4, 7), (3e-4, 8)]
    double = S.sweep_runs(sweeps / "double_sst2.yaml")
    assert [(lr, seed, p["train.max_steps"]) for lr, seed, p in double] == [(3e-4, 6, 1000), (3e-4, 7, 1000),
                                                                           (3e-4, 8, 1000)]
    runs += [_run("sst2", "lora", 3e-4, 7, 0.9, 0.62), _run("sst2", "lora", 3e-4, 8, 0.9, 0.64)]
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/double_sst2"]
    c = S.cell(runs, "sst2", S.TABLE1[2], 3e-4)
    assert c.values == {6: 60.0, 7: 62.0, 8: 64.0} and c.mean == pytest.approx(62.0) and c.std == pytest.approx(2.0)


def _tune_file(sweeps, task, setting, lrs):
    name = f"tune_{task}_{setting.method}"
    (sweeps / f"{name}.yaml").write_text(S.sweep_yaml(name, [], task, setting, lrs, (6,)))


def test_the_budget_check_doubles_the_best_core_setting_on_held_out_not_on_dev(sweeps):
    dcft8 = S.TABLE1[0]
    _tune_file(sweeps, "sst2", dcft8, [8e-4, 2e-3, 5e-3])
    runs = [_run("sst2", "lora", lr, 6, h, d) for lr, h, d in ((1e-4, .80, .70), (3e-4, .90, .95), (8e-4, .85, .9))]
    runs += [_run("sst2", "dcft", lr, 6, h, d) for lr, h, d in ((8e-4, .80, .7), (2e-3, .92, .6), (5e-3, .85, .7))]
    assert S.budget_check(runs, "sst2") is None  # the DCFT file's kernel-2 grid is not run yet
    assert S.plan_next(runs, ("sst2",)) == ["cpu/tune_sst2_dcft"]  # and LoRA's seeds wait for the check
    runs += [_run("sst2", "dcft", lr, 6, h, .99, kernel=2) for lr, h in ((8e-4, .7), (2e-3, .89), (5e-3, .8))]
    check = S.budget_check(runs, "sst2")
    assert (check.best.name, check.lr, check.verdict) == ("dcft8", 2e-3, "running")  # 0.92 > 0.90 held-out
    # the other core settings' seeds wait for the verdict, as the other baselines do
    assert S.plan_next(runs, ("sst2",)) == ["cpu/seeds_sst2_dcft8", "cpu/double_sst2"]
    assert [p["kernel"] for _, _, p in S.sweep_runs(sweeps / "double_sst2.yaml")] == [8, 8, 8]
    # a stream that runs other settings leaves the check to the stream that runs DCFT k8
    assert S.plan_next(runs, ("sst2",), ("lora",)) == []


def _checked(doubled_devs):
    """LoRA alone in the core, selected at 3e-4 (dev 60, 62, 64 at 500 steps) and run at 1000 steps."""
    runs = [_run("sst2", "lora", lr, 6, h, 0.5) for lr, h in ((1e-4, 0.8), (8e-4, 0.85))]
    runs += [_run("sst2", "lora", 3e-4, seed, 0.9, dev) for seed, dev in ((6, .60), (7, .62), (8, .64))]
    runs += [_run("sst2", "lora", 3e-4, seed, 0.9, dev, steps=1000) for seed, dev in zip((6, 7, 8), doubled_devs)]
    return runs


def test_other_baselines_wait_for_a_converged_budget(sweeps):
    _tune_file(sweeps, "sst2", S.Setting("bitfit", "BitFit", "bitfit"), [1e-4, 3e-4, 8e-4])
    runs = _checked((.61, .625, .645))
    assert S.plan_next(runs[:-1], ("sst2",)) == ["cpu/double_sst2"]  # seed 8 at 2x missing: BitFit waits
    # 2x - 1x = +1, +0.5, +0.5: mean 0.667, std 0.2887, t(0.975, 2) = 4.3027: interval [-0.05, +1.38] holds 0
    check = S.budget_check(runs, "sst2")
    assert check.verdict == "converged"
    assert (check.difference["lo"], check.difference["hi"]) == (pytest.approx(-0.0504, abs=1e-3),
                                                                pytest.approx(1.3838, abs=1e-3))
    assert S.plan_next(runs, ("sst2",)) == ["cpu/tune_sst2_bitfit"]  # LoRA's seeds are all there


def test_after_a_converged_check_core_seeds_then_ablations_by_tier_then_other_baselines(sweeps):
    _tune_file(sweeps, "sst2", S.Setting("bitfit", "BitFit", "bitfit"), [1e-4, 3e-4, 8e-4])
    _tune_file(sweeps, "sst2", S.TABLE1[0], [1e-3, 2e-3, 5e-3])
    runs = _checked((.61, .625, .645))  # LoRA converged (the test above)
    runs += [_run("sst2", "dcft", lr, 6, h, 0.5) for lr, h in ((1e-3, .7), (2e-3, .8), (5e-3, .75))]
    runs += [_run("sst2", "dcft", lr, 6, h, 0.5, kernel=2) for lr, h in ((1e-3, .7), (2e-3, .8), (5e-3, .75))]
    assert S.budget_check(runs, "sst2").best.name == "lora"  # held-out 0.9 against DCFT's 0.8
    assert S.plan_next(runs, ("sst2",)) == [
        "cpu/seeds_sst2_dcft8", "cpu/seeds_sst2_dcft2",
        "cpu/ablate_sst2_dcft4", "cpu/ablate_sst2_dcft12", "cpu/ablate_sst2_dcft8s1", "cpu/ablate_sst2_dcft8s4",
        "cpu/ablate_sst2_dcft8qv", "cpu/ablate_sst2_dcft8qkvo", "cpu/ablate_sst2_dcft8lorainit",
        "cpu/ablate_sst2_dcft6", "cpu/ablate_sst2_dcft8s2", "cpu/ablate_sst2_dcft8qk", "cpu/ablate_sst2_dcft8qkv",
        "cpu/tune_sst2_bitfit"]
    assert [(lr, seed) for lr, seed, _ in S.sweep_runs(sweeps / "ablate_sst2_dcft8s1.yaml")] == [(2e-3, 6), (2e-3, 7),
                                                                                                 (2e-3, 8)]


def test_a_budget_that_moves_beyond_seed_noise_stops_the_task(sweeps, capsys):
    _tune_file(sweeps, "sst2", S.Setting("bitfit", "BitFit", "bitfit"), [1e-4, 3e-4, 8e-4])
    runs = _checked((.63, .645, .67))  # +3, +2.5, +3: interval [+2.2, +3.5]
    assert S.budget_check(runs, "sst2").verdict == "not converged"
    assert S.plan_next(runs, ("sst2",)) == []
    err = capsys.readouterr().err
    assert "sst2: the budget has not converged" in err and "+2.83" in err and "BUDGET['sst2']" in err


@pytest.fixture
def walk(tmp_path, monkeypatch):
    """SST-2 checked at 500 steps before its BUDGET of 1000; LoRA the only core setting with a grid."""
    monkeypatch.setattr(S, "SWEEP_DIR", tmp_path)
    monkeypatch.setitem(S.BUDGET, "sst2", {**S.BUDGET["sst2"], "max_steps": 1000})
    monkeypatch.setattr(S, "EARLIER_STEPS", {"sst2": (500,)})
    (tmp_path / "steps500").mkdir()
    (tmp_path / "steps500" / "tune_sst2_lora.yaml").write_text(
        S.sweep_yaml("tune_sst2_lora", [], "sst2", S.TABLE1[2], [1e-4, 3e-4, 8e-4], (6,), steps=500))
    runs = [_run("sst2", "lora", lr, 6, h, d, steps=500) for lr, h, d in ((1e-4, .8, .5), (3e-4, .9, .6), (8e-4, .85, .5))]
    return tmp_path, runs


def test_a_short_budget_moves_the_plan_to_the_next_one_around_its_rates(walk, capsys):
    sweeps, runs = walk
    # the check at 500 steps, its files in steps500/, at 500 and 1000 steps
    assert S.plan_next(runs, ("sst2",)) == ["cpu/steps500/seeds_sst2_lora", "cpu/steps500/double_sst2"]
    assert [(lr, p["train.max_steps"]) for lr, _, p in S.sweep_runs(sweeps / "steps500" / "double_sst2.yaml")] \
        == [(3e-4, 1000)] * 3
    runs += [_run("sst2", "lora", 3e-4, seed, 0.9, dev, steps=500) for seed, dev in ((7, .62), (8, .64))]
    runs += [_run("sst2", "lora", 3e-4, seed, 0.92, dev, steps=1000) for seed, dev in ((6, .63), (7, .645))]
    assert S.plan_next(runs, ("sst2",)) == ["cpu/steps500/double_sst2"]  # seed 8 at 1000 missing
    runs.append(_run("sst2", "lora", 3e-4, 8, 0.92, .67, steps=500 * 2))  # +3, +2.5, +3: not converged
    # 1000 steps: a grid around 500's choice (3e-4), not the source's; 3e-4's seed 6 is the check's run
    assert S.plan_next(runs, ("sst2",)) == ["cpu/retune_sst2_lora"]
    assert [(lr, seed, p["train.max_steps"]) for lr, seed, p in S.sweep_runs(sweeps / "retune_sst2_lora.yaml")] \
        == [(1e-4, 6, 1000), (3e-4, 6, 1000), (8e-4, 6, 1000)]
    runs += [_run("sst2", "lora", lr, 6, h, 0.5, steps=1000) for lr, h in ((1e-4, 0.8), (8e-4, 0.95))]
    assert S.plan_next(runs, ("sst2",)) == ["cpu/extend_sst2_lora_2.0e-03"]  # 8e-4 at the top edge, at 1000
    runs.append(_run("sst2", "lora", 2e-3, 6, 0.85, 0.5, steps=1000))
    assert S.plan_next(runs, ("sst2",)) == ["cpu/seeds_sst2_lora", "cpu/double_sst2"]
    assert [(lr, seed, p["train.max_steps"]) for lr, seed, p in S.sweep_runs(sweeps / "double_sst2.yaml")] \
        == [(8e-4, 6, 2000), (8e-4, 7, 2000), (8e-4, 8, 2000)]
    assert capsys.readouterr().err == ""  # a short earlier budget is walked past, not reported as the end


def test_a_budget_that_converges_before_the_last_one_stops_the_walk(walk, capsys):
    sweeps, runs = walk
    runs += [_run("sst2", "lora", 3e-4, seed, 0.9, dev, steps=500) for seed, dev in ((7, .62), (8, .64))]  # 60, 62, 64
    runs += [_run("sst2", "lora", 3e-4, seed, 0.9, dev, steps=1000) for seed, dev in ((6, .61), (7, .625), (8, .645))]
    assert S.plan_next(runs, ("sst2",)) == []  # +1, +0.5, +0.5: [-0.05, +1.38] holds 0
    assert "converged at 500 steps" in capsys.readouterr().err


def test_a_rate_chosen_at_the_grid_edge_extends_the_grid_twice_at_most(sweeps):
    runs = [_run("sst2", "lora", lr, 6, h, 0.5) for lr, h in ((1e-4, 0.7), (3e-4, 0.8), (8e-4, 0.9))]
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/extend_sst2_lora_2.0e-03"]
    runs.append(_run("sst2", "lora", 2e-3, 6, 0.95, 0.5))
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/extend_sst2_lora_5.0e-03"]
    runs.append(_run("sst2", "lora", 5e-3, 6, 0.97, 0.5))  # still the edge, but two extensions made
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/seeds_sst2_lora", "cpu/double_sst2"]
    assert [lr for lr, _, _ in S.sweep_runs(sweeps / "seeds_sst2_lora.yaml")] == [5e-3, 5e-3]


def test_settings_tell_kernels_strides_and_budgets_apart(budget500):
    k8, k2 = S.TABLE1[0], S.TABLE1[1]
    s2 = S.ABLATIONS["stride"][1]
    run = _run("cola", "dcft", 1e-3, 6, 0.1, 0.1)
    assert k8.matches(run, "cola") and not k2.matches(run, "cola") and not s2.matches(run, "cola")
    assert s2.matches(_run("cola", "dcft", 1e-3, 6, 0.1, 0.1, stride=2), "cola")
    assert not k8.matches(_run("cola", "dcft", 1e-3, 6, 0.1, 0.1, steps=1200), "cola")  # the doubled budget
    assert not k8.matches(run, "sst2")


# ---- the report, on made-up result files ------------------------------------------------------------
def test_paired_difference_and_its_t_interval_by_hand():
    from dcft.study import paired

    a = S.Cell({6: 81.0, 7: 82.0, 8: 83.0}, [])
    b = S.Cell({6: 80.0, 7: 80.0, 8: 80.0, 9: 99.0}, [])  # seed 9 has no partner: left out
    p = paired(a, b)
    # differences 1, 2, 3: mean 2, std 1, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3) = 2.4842
    assert p["diffs"] == [1.0, 2.0, 3.0] and p["mean"] == pytest.approx(2.0) and p["std"] == pytest.approx(1.0)
    assert (p["lo"], p["hi"]) == (pytest.approx(-0.4842, abs=1e-4), pytest.approx(4.4842, abs=1e-4))
    assert p["exceeds"] is False
    p = paired(S.Cell({6: 85.0, 7: 86.0, 8: 85.5}, []), b)  # 5, 6, 5.5: interval [4.26, 6.74]
    assert p["exceeds"] is True


def test_a_one_seed_difference_is_shown_without_spread_or_interval():
    from dcft.study import paired
    from dcft.study_report import _paired_text

    assert _paired_text(paired(S.Cell({6: 82.5}, []), S.Cell({6: 80.0, 7: 81.0}, []))) == ["+2.50", "+2.50 (n=1)",
                                                                                         "-", "-"]


def test_early_mean_averages_each_seeds_first_half_by_hand():
    from dcft.study_report import early_mean

    by_step = {100: S.Cell({6: 10.0, 7: 20.0, 8: 5.0}, ["a"]), 200: S.Cell({6: 30.0, 7: 40.0}, ["b"]),
               300: S.Cell({6: 50.0, 7: 60.0, 8: 0.0}, []), 400: S.Cell({6: 70.0, 7: 80.0, 8: 0.0}, [])}
    # first half: steps 100 and 200 (<= 400 / 2); seed 8 has no step 200, so it is left out
    half = early_mean(by_step)
    assert half.values == {6: 20.0, 7: 30.0} and half.runs == ["a", "b"]
    assert early_mean({}).n == 0


def _result_file(root: Path, task, method, lr, seed, holdout, dev, params, steps=None, **method_keys):
    m = {"name": method, **method_keys}
    steps = steps or S.BUDGET[task]["max_steps"]
    label = "_".join(f"{k}={v}" for k, v in sorted(method_keys.items()))  # no spaces, as real run folders
    folder = root / "minilm" / task / method / f"{label}-{lr}-{seed}-{steps}"
    folder.mkdir(parents=True)
    metric = S.METRIC[task]
    rec = {"status": "completed", "finished_at": "2026-12-02T10:00:00",
           "config": {"model": {"name": "minilm"}, "task": {"name": task}, "method": m, "seed": seed,
                      "train": {"lr": lr, "max_steps": steps}, "data": {"holdout": 0.1}},
           "identity": {"declared": {"model": {"name": "minilm"}, "task": {"name": task}, "method": m, "seed": seed,
                                     "train": {"lr": lr, "max_steps": steps}}},
           "params": {"method": params}, "train": {"train_time_s": 60.0},
           "metrics": {"best": {"score": holdout, f"validation/{metric}": dev, f"holdout/{metric}": holdout},
                       "history": [{"step": 100, f"validation/{metric}": dev / 2},
                                   {"step": 500, f"validation/{metric}": dev}]}}
    (folder / "result.json").write_text(json.dumps(rec))


def test_report_selects_on_held_out_and_reports_dev_of_three_seeds(tmp_path, monkeypatch, budget500):
    from dcft.study_report import report

    monkeypatch.setattr(S, "SWEEP_DIR", tmp_path / "sweeps")
    (tmp_path / "sweeps").mkdir()
    _tune_file(tmp_path / "sweeps", "sst2", S.TABLE1[2], [1e-4, 3e-4, 8e-4])  # LoRA's grid: the check's setting
    bitfit = next(s for s in S.TABLE1 if s.name == "bitfit")
    _tune_file(tmp_path / "sweeps", "sst2", bitfit, [1e-4, 3e-4, 8e-4])  # BitFit's: it selects its high edge
    runs = tmp_path / "runs"
    dcft = {"kernel": 8, "stride": 8, "targets": "all", "init": "normal"}
    for lr, h, d in ((3e-4, 0.80, 0.90), (8e-4, 0.85, 0.70), (2e-3, 0.82, 0.80)):  # selected: 8e-4 (held-out)
        _result_file(runs, "sst2", "dcft", lr, 6, h, d, 7488, **dcft)
    _result_file(runs, "sst2", "dcft", 8e-4, 7, 0.5, 0.72, 7488, **dcft)
    _result_file(runs, "sst2", "dcft", 8e-4, 8, 0.5, 0.74, 7488, **dcft)
    k2 = {**dcft, "kernel": 2, "stride": 2}
    for lr, seed, h, d in ((3e-4, 6, .9, .80), (8e-4, 6, .8, .50), (2e-3, 6, .7, .50), (3e-4, 7, .5, .82),
                           (3e-4, 8, .5, .84)):  # DCFT k2 selects 3e-4, not DCFT k8's 8e-4
        _result_file(runs, "sst2", "dcft", lr, seed, h, d, 20880, **k2)
    for seed, d in ((6, .60), (7, .62), (8, .67)):  # the kernel-12 ablation, at DCFT k8's rate
        _result_file(runs, "sst2", "dcft", 8e-4, seed, 0.5, d, 5000, **{**dcft, "kernel": 12, "stride": 12})
    for lr, h, d in ((1e-4, 0.7, 0.7), (3e-4, 0.9, 0.75), (8e-4, 0.8, 0.9)):  # selected: 3e-4
        _result_file(runs, "sst2", "lora", lr, 6, h, d, 41472)
    for lr, seed, h, d in ((1e-4, 6, .5, .5), (3e-4, 6, .6, .5), (8e-4, 6, .7, .60), (8e-4, 7, .1, .61), (8e-4, 8, .1, .62)):
        _result_file(runs, "sst2", "bitfit", lr, seed, h, d, 100)
    _result_file(runs, "sst2", "lora", 3e-4, 7, 0.5, 0.79, 41472)
    _result_file(runs, "sst2", "lora", 3e-4, 8, 0.5, 0.77, 41472)
    for seed, dev in ((6, 0.76), (7, 0.80), (8, 0.78)):  # LoRA at twice the steps: +1, +1, +1
        _result_file(runs, "sst2", "lora", 3e-4, seed, 0.5, dev, 41472, steps=1000)
    report(runs, tmp_path / "out")
    rows = {r[0]: r for r in csv.reader(open(tmp_path / "out" / "tables" / "table1.csv"))}
    assert rows["DCFT k8"][1:3] == ["7,488", "72.00 ± 2.00 @ 8.0e-04 (grid unfinished)"]
    assert rows["LoRA r=1"][1:3] == ["41,472", "77.00 ± 2.00 @ 3.0e-04"]  # its grid file exists and ran
    assert rows["BitFit"][2] == "61.00 ± 1.00 @ 8.0e-04 (grid's high edge)"  # its largest rate won: flagged
    kernel_rows = [r for r in csv.reader(open(tmp_path / "out" / "tables" / "ablations.csv")) if r[1] == "kernel"]
    # by kernel, not by title ("DCFT k12" < "DCFT k2" as text)
    assert [r[2] for r in kernel_rows] == ["DCFT k2", "DCFT k4", "DCFT k6", "DCFT k8", "DCFT k12"]
    # k2 at its own rate: 80, 82, 84; minus DCFT k8's 70, 72, 74 = +10 each
    assert kernel_rows[0][3:6] == ["20,880", "82.00 ± 2.00", "+10.00 ± 0.00"]
    # k12: 60, 62, 67 (mean 63, std sqrt(26 / 2)); minus 70, 72, 74 = -10, -10, -7 (std sqrt(6 / 2))
    assert kernel_rows[4][3:7] == ["5,000", "63.00 ± 3.61", "-9.00 ± 1.73", "[-13.30, -4.70]"]
    cell_rows = {(r["table"], r["setting"]): r for r in csv.DictReader(open(tmp_path / "out" / "tables" / "cells.csv"))}
    k12 = cell_rows[("ablation: kernel", "DCFT k12")]  # an ablation cell names its runs too, at DCFT k8's rate
    assert (k12["lr"], k12["n"], k12["mean"]) == ("8.0e-04", "3", "63.0000")
    assert sorted(r.rsplit("-", 2)[1] for r in k12["runs"].split()) == ["6", "7", "8"]
    assert all("12" in r for r in k12["runs"].split())
    assert cell_rows[("table1", "BitFit")]["n"] == "3"
    assert ("ablation: kernel", "DCFT k8") not in cell_rows  # a Table 1 setting is listed once, under table1
    doubled = cell_rows[("convergence: 1000 steps", "LoRA r=1")]  # the budget check's 2x cell: 76, 80, 78
    assert (doubled["lr"], doubled["n"], doubled["mean"], len(doubled["runs"].split())) == ("3.0e-04", "3", "78.0000", 3)
    assert all(r.endswith("-1000") for r in doubled["runs"].split())
    paired_rows = list(csv.reader(open(tmp_path / "out" / "tables" / "paired.csv")))
    # DCFT - LoRA per seed: 70 - 75, 72 - 79, 74 - 77 = -5, -7, -3
    assert paired_rows[1][:4] == ["sst2", "DCFT k8 - LoRA r=1", "-5.00, -7.00, -3.00", "-5.00 ± 2.00"]
    # then against the other settings: DCFT k8 - BitFit (60, 61, 62 at its 8e-4) = +10, +11, +12;
    # half-width t(0.975, 2) * 1 / sqrt(3) = 4.303 / 1.732 = 2.48
    bitfit_row = next(r for r in paired_rows if r[1] == "DCFT k8 - BitFit")
    assert bitfit_row == ["sst2", "DCFT k8 - BitFit", "+10.00, +11.00, +12.00", "+11.00 ± 1.00", "[+8.52, +13.48]",
                          "yes"]
    assert [r[1] for r in paired_rows[1:3]] == ["DCFT k8 - LoRA r=1", "DCFT k2 - LoRA r=1"]
    conv = list(csv.reader(open(tmp_path / "out" / "tables" / "convergence.csv")))
    assert conv[1][:7] == ["sst2", "LoRA r=1", "3.0e-04", "500", "77.00 ± 2.00", "1000", "78.00 ± 2.00"]
    assert conv[1][7:] == ["+1.00 ± 0.00", "[+1.00, +1.00]", "yes", "not converged"]
    speed = {r[1]: r for r in csv.reader(open(tmp_path / "out" / "tables" / "learning_speed.csv"))}
    # step 100 holds half the dev score: DCFT k8 35, 36, 37; LoRA 37.5, 39.5, 38.5: -2.5, -3.5, -1.5
    assert speed["DCFT k8"][3:8] == ["36.00 ± 1.00", "72.00 ± 2.00", "-", "72.00 ± 2.00", "100"]
    assert speed["DCFT k8"][8:11] == ["-2.50 ± 1.00", "[-4.98, -0.02]", "yes"]
    # first half of a 500-step run: step 100 only (step 500 > 250), so the same numbers as the first evaluation
    assert speed["DCFT k8"][11:] == ["36.00 ± 1.00", "-2.50 ± 1.00", "[-4.98, -0.02]", "yes"]
    assert speed["LoRA r=1"][3] == "38.50 ± 1.00" and speed["LoRA r=1"][8:] == ["-", "-", "-", "38.50 ± 1.00",
                                                                              "-", "-", "-"]
    from dcft.study_report import ablation_rows, ablation_series, table1_cells

    loaded = S.load(runs)
    points = ablation_series(ablation_rows(loaded, table1_cells(loaded)), "sst2", "kernel")
    assert [(v, round(m, 2), round(sd, 2), n) for v, m, sd, n in points] == [
        ("2", 82.0, 2.0, 3), ("8", 72.0, 2.0, 3), ("12", 63.0, 3.61, 3)]  # the kernel panel: runs only, in order
    for stem in ("pareto", "learning_curves", "convergence", "ablations"):
        assert (tmp_path / "out" / "figures" / f"{stem}.png").stat().st_size > 0


@pytest.mark.parametrize("lr, steps, want", [(8e-4, 1, 1e-3), (8e-4, -1, 5e-4), (2.2e-3, 1, 3e-3), (2.2e-3, -1, 2e-3),
                                             (1e-3, -1, 8e-4), (1e-3, 6, 2e-2), (1e-3, -6, 8e-5), (3e-4, 0, 3e-4)])
def test_ladder_steps_by_hand(lr, steps, want):
    from dcft.ladder import ladder_step

    assert ladder_step(lr, steps) == pytest.approx(want)


def test_bench_times_keep_the_fast_harness_training_rows(tmp_path):
    from dcft.study_report import bench_times

    rows = [{"method": "dcft", "kernel": 8, "stride": 8, "impl": "fast", "phase": "train", "via": "harness",
             "step_s_median": 0.5, "ratio_to_lora": 1.1, "ratio_to_lora_q1": 1.0, "ratio_to_lora_q3": 1.2},
            {"method": "dcft", "kernel": 8, "stride": 8, "impl": "reference", "phase": "train", "via": "harness",
             "step_s_median": 0.9, "ratio_to_lora": 2.0, "ratio_to_lora_q1": 1.9, "ratio_to_lora_q3": 2.1},
            {"method": "dcft", "kernel": 8, "stride": 8, "impl": "fast", "phase": "train", "via": "peft",
             "step_s_median": 0.6, "ratio_to_lora": 1.2},
            {"method": "dcft", "kernel": 8, "stride": 8, "impl": "fast", "phase": "inference", "via": "harness",
             "step_s_median": 0.1, "ratio_to_lora": None},
            {"method": "lora", "kernel": None, "stride": None, "impl": None, "phase": "train", "via": None,
             "step_s_median": 0.45, "ratio_to_lora": 1.0}]
    (tmp_path / "b.json").write_text(json.dumps({"rows": rows}))
    assert bench_times(tmp_path / "b.json") == {(8, 8, "fast"): (0.5, 1.1, 1.0, 1.2),
                                                (8, 8, "reference"): (0.9, 2.0, 1.9, 2.1)}
    assert bench_times(tmp_path / "missing.json") == {}
