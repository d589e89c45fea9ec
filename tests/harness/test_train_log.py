"""log.jsonl and result.json of a real (tiny) run: the loss split into task loss and regulariser,
the epoch count, and file modes (the problem: "loss mixes task loss and regulariser", "`epochs: 0`
after a full epoch", "result.json written 0600")."""

from __future__ import annotations

import json
import os
import stat

import pytest

from conftest import compose_cfg
from dcft.report import results
from dcft.harness.experiment import run
from test_experiment import write_learnable_rte

# 32 training examples, batch 8: 4 optimizer steps per epoch.
TINY = ["model=tiny-bert", "task=rte", "train.batch_size=8", "data.limit_train=32", "data.limit_eval=16",
        "train.max_len=32", "train.progress=false", "train.log_steps=1", "train.eval_steps=-1", "train.lr=1e-2"]


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    return write_learnable_rte(tmp_path_factory.mktemp("glue"), n_train=64, n_dev=16)


def _train_log(run_dir):
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if r["type"] == "train"]


def test_task_loss_does_not_depend_on_the_regulariser_weight(glue_dir, tmp_path):
    """Step 1's task loss is computed before any update, so it is the same whatever gamma is; the
    objective differs by the regulariser. A log that put the regulariser into `task_loss` fails."""
    logs = {}
    for gamma in (0.0, 5.0):
        cfg = compose_cfg(TINY + ["method=dcft", "kernel=8", "train.max_steps=2", f"dcft_hp.reg_orth_coef={gamma}",
                                  f"data.glue_dir={glue_dir}"])
        run(cfg, tmp_path / f"g{gamma}")
        logs[gamma] = _train_log(tmp_path / f"g{gamma}")
    first0, first5 = logs[0.0][0], logs[5.0][0]
    assert first0["step"] == first5["step"] == 1
    assert first5["task_loss"] == pytest.approx(first0["task_loss"], rel=1e-6)
    assert first0["reg_loss"] == 0.0 and first5["reg_loss"] > 1e-3
    for rec in logs[5.0]:
        assert rec["loss"] == pytest.approx(rec["task_loss"] + rec["reg_loss"], rel=1e-9, abs=1e-12)
        assert "lr" in rec  # kept, with its meaning (the scheduler's rate after the step)


def test_lora_has_no_regulariser(glue_dir, tmp_path):
    run(compose_cfg(TINY + ["method=lora", "train.max_steps=2", f"data.glue_dir={glue_dir}"]), tmp_path / "r")
    assert all(r["reg_loss"] == 0.0 and r["loss"] == r["task_loss"] for r in _train_log(tmp_path / "r"))


@pytest.mark.parametrize("over, epochs, steps", [(["train.epochs=1"], 1, 4), (["train.max_steps=4"], 1, 4),
                                                 (["train.max_steps=3"], 0, 3), (["train.epochs=2"], 2, 8)])
def test_epochs_count_full_passes(glue_dir, tmp_path, over, epochs, steps):
    rec = run(compose_cfg(TINY + ["method=bitfit", f"data.glue_dir={glue_dir}"] + over), tmp_path / "r")
    assert rec["train"]["steps"] == steps and rec["train"]["epochs"] == epochs
    log = _train_log(tmp_path / "r")
    assert [r["epoch"] for r in log] == [(s // 4) for s in range(1, steps + 1)]  # completed passes after each step


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_write_gives_the_mode_open_would(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        results.atomic_write_text(tmp_path / "x.json", "{}")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode


def test_result_and_checkpoint_files_are_readable_by_others(glue_dir, tmp_path):
    old = os.umask(0o022)
    try:
        run(compose_cfg(TINY + ["method=dcft", "kernel=8", "train.max_steps=2", "train.checkpoint_steps=1",
                                f"data.glue_dir={glue_dir}"]), tmp_path / "r")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert any(p.name == "result.json" for p in files) and any("checkpoint" in str(p) for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}
