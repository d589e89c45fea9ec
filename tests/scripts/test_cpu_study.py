"""The CPU study (issue 16): its configs against the sources' numbers typed here by hand, and its
stage planner (`dcft.study`) against made-up run records whose right answer is worked out here.

Sources of the hand-typed values: the authors' DeBERTaV3-base SST-2 script (lr 8e-4, 24 epochs,
1000 warm-up steps, batch 32: 24 x ceil(67349 / 32) = 50,520 steps), SoRA's run_glue_lora.sh (LoRA:
warm-up ratio 0.06, weight decay 0.1, clip 0.1), the DeBERTa repository's cola.sh (full: 6 epochs,
100 warm-up steps: 6 x ceil(8551 / 32) = 1,608 steps, lr 2e-5)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import ROOT, compose_cfg
from dcft import study as S


def _generator():
    spec = importlib.util.spec_from_file_location("cpu_study", ROOT / "scripts" / "cpu_study.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen
    spec.loader.exec_module(gen)
    return gen


def test_committed_files_are_what_the_generator_writes():
    for path, text in _generator().planned_files().items():
        assert path.read_text(encoding="utf-8") == text, path


def test_dcft_on_sst2_has_the_authors_settings_and_the_cpu_budget():
    cfg = compose_cfg(["model=minilm", "preset=cpu", "task=sst2", "method=dcft", "kernel=8"])
    t = cfg.train
    assert (t.lr, t.batch_size, t.max_steps, t.cls_dropout, t.weight_decay) == (8e-4, 32, 500, 0.0, 0.01)
    assert t.warmup_steps == 0 and t.warmup_ratio == pytest.approx(1000 / 50520, abs=1e-4)
    assert t.group_by_length is True and cfg.data.holdout == 0.01
    assert (cfg.method.alpha, cfg.method.r, cfg.method.reg_orth_coef) == (16.0, 2.0, 0.1)


def test_lora_on_sst2_has_its_own_source_settings_and_the_same_budget():
    cfg = compose_cfg(["model=minilm", "preset=cpu", "task=sst2", "method=lora"])
    t = cfg.train
    assert (t.lr, t.warmup_ratio, t.weight_decay, t.max_grad_norm) == (3e-4, 0.06, 0.1, 0.1)
    assert (t.batch_size, t.max_steps, cfg.data.holdout) == (32, 500, 0.01)  # the task's, as DCFT's
    assert (cfg.method.r, cfg.method.targets) == (1, "all")


def test_full_finetuning_on_cola_keeps_its_warmup_fraction():
    cfg = compose_cfg(["model=minilm", "preset=cpu", "task=cola", "method=full"])
    assert cfg.train.lr == 2e-5 and cfg.train.warmup_ratio == pytest.approx(100 / 1608, abs=1e-4)
    assert (cfg.train.adam_eps, cfg.train.cls_dropout, cfg.train.max_steps) == (1e-6, 0.15, 600)


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
    return {"task": task, "method": method, "lr": lr, "seed": seed, "selection_score": holdout,
            "run": f"{task}/{method}/{lr}/{seed}", "best": {f"validation/{S.METRIC[task]}": dev},
            "declared": {"method": m, "train": {"max_steps": steps or S.BUDGET[task]["max_steps"]}}}


@pytest.fixture
def sweeps(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "SWEEP_DIR", tmp_path)
    lora = S.Setting("lora", "LoRA", "lora")
    (tmp_path / "tune_sst2_lora.yaml").write_text(S.sweep_yaml("tune_sst2_lora", [], "sst2", lora,
                                                                [1e-4, 3e-4, 8e-4], (6,)))
    return tmp_path


def test_planner_waits_for_the_grid_then_adds_seeds_at_the_held_out_choice(sweeps):
    runs = [_run("sst2", "lora", 1e-4, 6, 0.80, 0.70), _run("sst2", "lora", 3e-4, 6, 0.90, 0.60)]
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/tune_sst2_lora"]  # 8e-4 missing
    runs.append(_run("sst2", "lora", 8e-4, 6, 0.85, 0.95))  # best dev, but dev never selects
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/seeds_sst2_lora"]
    assert [(lr, seed) for lr, seed, _ in S.sweep_runs(sweeps / "seeds_sst2_lora.yaml")] == [(3e-4, 7), (3e-4, 8)]
    runs += [_run("sst2", "lora", 3e-4, 7, 0.9, 0.62), _run("sst2", "lora", 3e-4, 8, 0.9, 0.64)]
    assert S.plan_next(runs, ("sst2",), ("lora",)) == []
    c = S.cell(runs, "sst2", S.TABLE1[2], 3e-4)
    assert c.values == {6: 60.0, 7: 62.0, 8: 64.0} and c.mean == pytest.approx(62.0) and c.std == pytest.approx(2.0)


def test_a_rate_chosen_at_the_grid_edge_extends_the_grid_twice_at_most(sweeps):
    runs = [_run("sst2", "lora", lr, 6, h, 0.5) for lr, h in ((1e-4, 0.7), (3e-4, 0.8), (8e-4, 0.9))]
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/extend_sst2_lora_2.0e-03"]
    runs.append(_run("sst2", "lora", 2e-3, 6, 0.95, 0.5))
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/extend_sst2_lora_5.0e-03"]
    runs.append(_run("sst2", "lora", 5e-3, 6, 0.97, 0.5))  # still the edge, but two extensions made
    assert S.plan_next(runs, ("sst2",), ("lora",)) == ["cpu/seeds_sst2_lora"]
    assert [lr for lr, _, _ in S.sweep_runs(sweeps / "seeds_sst2_lora.yaml")] == [5e-3, 5e-3]


def test_settings_tell_kernels_strides_and_budgets_apart():
    k8, k2 = S.TABLE1[0], S.TABLE1[1]
    s2 = S.ABLATIONS["stride"][1]
    run = _run("cola", "dcft", 1e-3, 6, 0.1, 0.1)
    assert k8.matches(run, "cola") and not k2.matches(run, "cola") and not s2.matches(run, "cola")
    assert s2.matches(_run("cola", "dcft", 1e-3, 6, 0.1, 0.1, stride=2), "cola")
    assert not k8.matches(_run("cola", "dcft", 1e-3, 6, 0.1, 0.1, steps=1200), "cola")  # the doubled budget
    assert not k8.matches(run, "sst2")
