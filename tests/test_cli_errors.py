"""A user error on the command line reads as one short message naming the key, the value and what
is valid, with no traceback and no run folder left behind."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT
from dcft.harness.config import unknown_key_hint


def _run_py(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_near_miss_keys_get_a_did_you_mean():
    assert "did you mean kernel?" in unknown_key_hint(["kernal=8"])
    assert "did you mean train.lr?" in unknown_key_hint(["train.lrr=1e-3"])
    assert "did you mean method.r?" in unknown_key_hint(["method=lora", "method.rr=2"])
    assert "did you mean method.kernel?" in unknown_key_hint(["method.kernell=4"])  # dcft by default
    assert unknown_key_hint(["kernel=8", "train.lr=1e-3", "+model.arch.hidden_dropout_prob=0", "-m",
                             "hydra.launcher.timeout_min=5", "method.targets=qv", "hydra/launcher=slurm",
                             "logger=none", "baseline_hp=shared"]) is None


def test_run_py_prints_the_hint_and_exits_2(tmp_path):
    p = _run_py(["kernal=8", f"output_root={tmp_path}"], tmp_path)
    assert p.returncode == 2 and "did you mean kernel?" in p.stderr and "Traceback" not in p.stderr
    assert "+kernal" not in p.stderr.replace("prefix it with +", "")


def test_bad_value_is_one_line_and_leaves_no_folder(tmp_path):
    p = _run_py(["model=tiny-bert", "preset=none", "method=dcft", "kernel=0", f"output_root={tmp_path / 'o'}"],
                tmp_path)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("error: ") and "kernel" in p.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*"))


def test_schemas_are_never_offered_as_choices(tmp_path):
    p = _run_py(["method=dcft_schema", f"output_root={tmp_path}"], tmp_path)
    assert p.returncode == 1
    assert "Available options in 'method'" in p.stderr and "_schema" not in p.stderr.replace("method/dcft_schema", "")
