"""`debug=smoke` fits every task: GLUE and SQuAD v1.1 / v2.0 through run.py (the problem: "with
max_len=64 the context window would be 57 tokens, which must exceed doc_stride=128")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, compose_cfg
from test_experiment_squad import write_squad

TASKS = sorted(p.stem for p in (ROOT / "conf" / "task").glob("*.yaml"))


@pytest.mark.parametrize("task", TASKS)
def test_smoke_window_fits_each_task(task):
    """Composed config of every task under smoke: the SQuAD window (max_len - 3 specials - question)
    exceeds doc_stride for a 40-token question, the longest kind real SQuAD has in numbers."""
    cfg = compose_cfg([f"task={task}", "debug=smoke", "model=tiny-bert", "preset=none"])
    assert cfg.train.max_steps > 0 and cfg.data.limit_train and cfg.data.limit_eval
    if cfg.task.kind == "squad":
        assert cfg.train.max_len - 3 - 40 > cfg.task.doc_stride


@pytest.mark.parametrize("task, version", [("squad", "v1"), ("squad_v2", "v2")])
def test_smoke_squad_runs(task, version, tmp_path):
    from dcft.harness.experiment import run

    squad = write_squad(tmp_path / "squad", version)
    rec = run(compose_cfg(["model=tiny-bert", f"task={task}", "method=lora", "preset=none", f"data.squad_dir={squad}",
                           "debug=smoke", "train.progress=false", "logger=none"]), tmp_path / "r")
    assert rec["status"] == "completed" and rec["train"]["steps"] == 4 and "validation/f1" in rec["metrics"]["best"]


@pytest.mark.slow
@pytest.mark.parametrize("task, version", [("squad", "v1"), ("squad_v2", "v2")])
def test_smoke_squad_through_run_py(task, version, tmp_path):
    squad = write_squad(tmp_path / "squad", version)
    cmd = [sys.executable, "run.py", "model=tiny-bert", f"task={task}", "method=dcft", "kernel=8", "preset=none",
           f"data.squad_dir={squad}", "debug=smoke", "train.progress=false", "logger=none",
           f"output_root={tmp_path / 'runs'}"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    (res,) = list((tmp_path / "runs").rglob("result.json"))
    rec = json.loads(res.read_text())
    assert rec["status"] == "completed" and rec["train"]["steps"] == 4
    assert rec["config"]["task"]["doc_stride"] == 8 and rec["config"]["train"]["max_len"] == 64
    assert "validation/f1" in rec["metrics"]["best"]
