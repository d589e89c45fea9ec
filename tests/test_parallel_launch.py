"""Several runs side by side on one machine through Hydra's joblib launcher (`hydra/launcher=joblib
hydra.launcher.n_jobs=N`, extra `parallel`): each run trains in its own worker process with its share of
the cores, and the thread count is not part of a run's identity (a relaunch with another launcher and
another thread count finds the same runs completed).

The split comes from joblib's loky backend: it starts each worker with OMP_NUM_THREADS (and the other
thread-pool variables) set to cpu_count // n_jobs unless the launching shell sets them, and torch reads
OMP_NUM_THREADS when it starts in the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from conftest import ROOT

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
TWO_RUNS = ["model=tiny-bert", "preset=none", "task=rte", "method=dcft", "kernel=4,8", "train.max_steps=150",
            "train.eval_steps=-1", "train.batch_size=8", "train.max_len=32", "train.progress=false", "logger=none"]


def launch(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}  # the machine's default threads
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "run.py", "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_joblib_runs_side_by_side_with_the_cores_split_and_the_same_identity(tmp_path: Path):
    from dcft.data.toy import write_learnable_rte

    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip(f"{cores} core: nothing to split between two runs")
    glue = write_learnable_rte(tmp_path / "glue")
    args = [*TWO_RUNS, f"data.glue_dir={glue}", f"output_root={tmp_path / 'runs'}"]
    launch([*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").rglob("result.json"))]
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert [r["machine"]["torch_threads"] for r in results] == [cores // 2] * 2  # each worker: its half of the cores
    (a_start, a_end), (b_start, b_end) = ((datetime.fromisoformat(r["started_at"]),
                                           datetime.fromisoformat(r["finished_at"])) for r in results)
    assert a_start <= b_end and b_start <= a_end  # side by side (each trains for several seconds; the clock ticks in seconds)

    again = launch(args)  # the basic launcher, one process with every core: the same two runs
    assert again.stdout.count("is already completed") == 2, again.stdout[-3000:]
    assert len(list((tmp_path / "runs").rglob("result.json"))) == 2
