"""The CPU study's configs (scripts/cpu_study.py, budgets from conf/study/cpu-minilm.yaml) against the
sources' numbers typed here by hand. Its protocol and report: tests/study/.

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
    assert not (ROOT / "conf" / "sweep" / "cpu").exists()  # the study's runs are planned, not written as configs


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
    assert _generator().lr_grid(rate) == pytest.approx(grid)


# ---- the ladder ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lr, steps, want", [(8e-4, 1, 1e-3), (8e-4, -1, 5e-4), (2.2e-3, 1, 3e-3), (2.2e-3, -1, 2e-3),
                                             (1e-3, -1, 8e-4), (1e-3, 6, 2e-2), (1e-3, -6, 8e-5), (3e-4, 0, 3e-4)])
def test_ladder_steps_by_hand(lr, steps, want):
    from dcft.ladder import ladder_step

    assert ladder_step(lr, steps) == pytest.approx(want)
