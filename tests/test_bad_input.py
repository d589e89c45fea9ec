"""Bad input, all of it: each gets a clear error before work starts, or a `failed` result file with
the reason, and never a half-written file. (Config-level cases — unknown names, wrong types,
typos — are in test_config.py; loader-level details in tests/data/.)"""

from __future__ import annotations

import errno
import json
import os

import pytest

from conftest import compose_cfg
from dcft.report import results
from dcft.harness.experiment import run
from test_experiment import TINY_RUN, write_learnable_rte


def _rejected(tmp_path, overrides, exc=Exception) -> str:
    """Run, expect `exc` before the run starts, and check nothing was written; returns the message."""
    with pytest.raises(exc) as e:
        run(compose_cfg(TINY_RUN + overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    return str(e.value)


def _fails(tmp_path, overrides, exc=Exception):
    """Run, expect `exc` after the run started, and return (message, the failed result record on disk)."""
    with pytest.raises(exc) as e:
        run(compose_cfg(TINY_RUN + overrides), tmp_path / "run")
    rec = results.read_result(tmp_path / "run")
    assert rec is not None and rec["status"] == "failed", rec
    assert rec["error"]["message"] == str(e.value)
    return str(e.value), rec


@pytest.fixture
def glue(tmp_path):
    return write_learnable_rte(tmp_path / "glue")


@pytest.mark.parametrize("overrides,words", [
    (["method=dcft", "kernel=7"], ["kernel=7", "48", "kernel"]),                    # does not divide the sizes
    (["method=dcft", "kernel=8", "stride=9"], ["stride", "kernel"]),                 # stride > kernel
    (["method=dcft", "kernel=64"], ["kernel=64"]),                                   # kernel larger than the layer
    (["method=dcft", "targets=qz"], ["qz", "qkvo"]),                                  # unknown target set
    (["method=dcft", "method.init=ones"], ["init", "normal"]),                        # unknown init
    (["train.device=tpu"], ["train.device", "cpu"]),
    (["train.mixed_precision=fp8"], ["mixed_precision", "bf16"]),
    (["train.nan_policy=ignore"], ["nan_policy", "skip"]),
    (["train.batch_size=0"], ["train.batch_size", "0"]),
    (["train.grad_accum=0"], ["train.grad_accum", "0"]),
])
def test_bad_settings_are_rejected_before_any_data_is_read(tmp_path, overrides, words):
    # The data folder does not exist: reaching the data would give a different error.
    msg = _rejected(tmp_path, overrides + [f"data.glue_dir={tmp_path / 'missing'}"], ValueError)
    for w in words:
        assert w in msg, (w, msg)


def test_missing_data_file_is_rejected_naming_it(tmp_path, glue):
    (glue / "RTE" / "dev.tsv").unlink()
    msg = _rejected(tmp_path, ["method=dcft", "kernel=8", f"data.glue_dir={glue}"])
    assert "dev.tsv" in msg


def test_model_directory_without_weights(tmp_path, glue):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    msg = _rejected(tmp_path, ["model=minilm", f"model.path={d}", f"data.glue_dir={glue}"], FileNotFoundError)
    assert str(d) in msg and "no weights" in msg


def test_model_path_that_is_not_a_directory(tmp_path, glue):
    msg = _rejected(tmp_path, ["model=minilm", f"model.path={tmp_path / 'nope'}", f"data.glue_dir={glue}"],
                    FileNotFoundError)
    assert "is not a directory" in msg


@pytest.mark.parametrize("content,words", [
    ("index\tsentence1\tlabel\n0\ta\tentailment\n", ["column", "sentence2"]),          # wrong columns
    ("", ["empty"]),                                                                    # empty file
    ("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", ["maybe"]),              # label out of range
    (b"index\tsentence1\tsentence2\tlabel\n0\ta\xff\tb\tentailment\n", ["UTF-8"]),     # not UTF-8
])
def test_malformed_data_file_gives_a_failed_result_naming_the_file(tmp_path, glue, content, words):
    path = glue / "RTE" / "train.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    msg, _ = _fails(tmp_path, ["method=dcft", "kernel=8", f"data.glue_dir={glue}"])
    assert "train.tsv" in msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)


def test_nan_loss_fails_with_the_step(tmp_path, glue):
    msg, rec = _fails(tmp_path, ["method=full", "train.lr=1e30", "train.max_grad_norm=0", f"data.glue_dir={glue}"])
    assert "non-finite" in msg and rec["error"]["step"] >= 1


def test_nan_loss_skipped_when_asked(tmp_path, glue, monkeypatch):
    from dcft.methods.dcft.method import DCFT

    calls = {"n": 0}

    def nan_on_third_step(self, model):
        import torch

        calls["n"] += 1
        return torch.tensor(float("nan")) if calls["n"] == 3 else None

    monkeypatch.setattr(DCFT, "extra_loss", nan_on_third_step)
    rec = run(compose_cfg(TINY_RUN + ["method=dcft", "kernel=8", "train.nan_policy=skip", "train.max_steps=6",
                                      "train.eval_steps=0", f"data.glue_dir={glue}"]), tmp_path / "run")
    assert rec["status"] == "completed" and rec["train"]["skipped_steps"] == 1 and rec["precision"] == "no"


def test_disk_full_while_writing_keeps_the_old_result(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    results.atomic_write_json(path, {"status": "completed", "n": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        results.atomic_write_json(path, {"status": "completed", "n": 2})
    assert json.loads(path.read_text()) == {"status": "completed", "n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind


def test_crash_between_write_and_rename_keeps_the_old_result(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    results.atomic_write_json(path, {"v": 1})

    def crash(src, dst):
        raise KeyboardInterrupt  # the process dies after the data is written, before the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        results.atomic_write_json(path, {"v": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_corrupt_checkpoint_is_reported_not_loaded(tmp_path, glue):
    from dcft.harness.checkpoint import CheckpointMismatch

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    msg, _ = _fails(tmp_path, ["method=dcft", "kernel=8", "train.checkpoint_steps=2", f"data.glue_dir={glue}"],
                    CheckpointMismatch)
    assert "cannot be read" in msg and "last.pt" in msg
