"""Checkpoint and resume: a run interrupted mid-way and launched again ends with the metrics of
an uninterrupted run; checkpoints are small, atomic, and refuse another configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, compose_cfg
from dcft.report import results
from dcft.harness.checkpoint import CheckpointMismatch
from dcft.harness.experiment import run
from test_experiment import TINY_RUN, write_learnable_rte

RESUME_RUN = TINY_RUN + ["method=dcft", "kernel=4", "train.max_steps=24", "train.eval_steps=8",
                         "train.checkpoint_steps=4", "train.batch_size=32"]  # 192 examples: 6 steps/epoch


class Crash(Exception):
    pass


def _crash_after_step(monkeypatch, at: int, method: str = "dcft"):
    """Make the method's per-step hook raise at optimizer step `at` (after the step-`at - 1` state)."""
    from dcft.methods import method_class

    cls = method_class(method)
    original = cls.after_step

    def after_step(self, model, step, optimizer=None):
        if step == at:
            raise Crash(f"simulated crash at step {at}")
        return original(self, model, step, optimizer)

    monkeypatch.setattr(cls, "after_step", after_step)


def _metrics(rec):
    return rec["metrics"]["history"], rec["metrics"]["best"], rec["train"]["final_loss"]


# AdaLoRA: warm-up to step 4, budget shrinking over steps 5-16, crash at 15 (last checkpoint 12), so
# the resumed run must continue the allocator's importance EMAs, not restart them.
RESUMED_METHODS = {"dcft": [], "adalora": ["method=adalora", "method.tinit=4", "method.tfinal=8"]}


@pytest.mark.parametrize("method", list(RESUMED_METHODS))
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, method):
    glue = write_learnable_rte(tmp_path / "glue")
    over = RESUME_RUN + RESUMED_METHODS[method] + [f"data.glue_dir={glue}"]
    reference = run(compose_cfg(over), tmp_path / "straight")

    _crash_after_step(monkeypatch, 15, method)  # across an epoch boundary and after an evaluation (step 8)
    with pytest.raises(Crash):
        run(compose_cfg(over), tmp_path / "resumed")
    assert results.read_result(tmp_path / "resumed")["status"] == "failed"
    ckpt = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["state"]["step"] == 12
    monkeypatch.undo()

    resumed = run(compose_cfg(over), tmp_path / "resumed")
    assert resumed["status"] == "completed"
    assert _metrics(resumed) == _metrics(reference)
    log = [json.loads(x) for x in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["resumed_at"] for r in log if r["type"] == "start"] == [0, 12]


def test_adapter_checkpoints_are_kilobytes(tmp_path):
    glue = write_learnable_rte(tmp_path / "glue")
    run(compose_cfg(RESUME_RUN + [f"data.glue_dir={glue}", "train.max_steps=4"]), tmp_path / "r")
    ckpt = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=False)
    backbone = [k for k in ckpt["trainable"] if k.endswith((".weight", ".bias"))
                and not k.startswith(("classifier.", "bert.pooler."))]
    assert backbone == [], backbone[:5]
    assert len(ckpt["trainable"]) == 2 * 6 * 3 + 4  # A, B, C of 12 layers + pooler and classifier
    assert (tmp_path / "r" / "checkpoints" / "last.pt").stat().st_size < 200_000
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_checkpoint_from_another_config_is_refused(tmp_path, monkeypatch):
    glue = write_learnable_rte(tmp_path / "glue")
    _crash_after_step(monkeypatch, 6)
    with pytest.raises(Crash):
        run(compose_cfg(RESUME_RUN + [f"data.glue_dir={glue}"]), tmp_path / "r")
    monkeypatch.undo()
    with pytest.raises(CheckpointMismatch) as e:
        run(compose_cfg(RESUME_RUN + [f"data.glue_dir={glue}", "train.lr=5e-3"]), tmp_path / "r")
    assert "another configuration" in str(e.value)
    assert results.read_result(tmp_path / "r")["status"] == "failed"


@pytest.mark.slow
def test_sigkill_and_relaunch_equals_uninterrupted(tmp_path):
    """The real thing: SIGKILL a `run.py` process once it has checkpointed, launch it again."""
    glue = write_learnable_rte(tmp_path / "glue")
    args = [a for a in RESUME_RUN if not a.startswith("train.max_steps")] + [
        "train.max_steps=60", f"data.glue_dir={glue}", "train.progress=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "run.py"), *args]
    straight = subprocess.run(cmd + [f"output_root={tmp_path / 'a'}"], env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-2000:]

    proc = subprocess.Popen(cmd + [f"output_root={tmp_path / 'b'}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "b").rglob("last.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert results.read_result(next((tmp_path / "b").rglob("checkpoints")).parent)["status"] == "running"
    again = subprocess.run(cmd + [f"output_root={tmp_path / 'b'}"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    a = json.loads(next((tmp_path / "a").rglob("result.json")).read_text())
    b = json.loads(next((tmp_path / "b").rglob("result.json")).read_text())
    assert _metrics(a) == _metrics(b)
