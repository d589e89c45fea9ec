"""Two CPU processes (gloo, launched by `accelerate launch`) give the result of one process with
the same global batch, write one result file from the main process, into the same folder (the
launches and the comparison are `dcft.gpu_check.parallel`'s, which the GPU check runs on two GPUs)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from dcft.gpu_check import parallel
from dcft.gpu_check.verdict import markdown_table


@pytest.mark.slow  # two accelerate launches of a training run: about 20 s
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    one, two = parallel.run_pair(tmp_path)
    rows = parallel.same_run(one, two)
    assert len(rows) == 6 and all(r.outcome == "pass" for r in rows), markdown_table(rows)


# A checker registered before make_accelerator runs after it at exit (atexit is last-in, first-out).
LEAVES_AT_EXIT = textwrap.dedent("""
    import atexit, os, socket
    import torch.distributed as dist
    from omegaconf import OmegaConf
    from dcft.harness.experiment import make_accelerator
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1",
                      LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", ACCELERATE_USE_CPU="true")
    dist.init_process_group("gloo", rank=0, world_size=1)
    atexit.register(lambda: print("initialized at exit:", dist.is_initialized()))
    for _ in range(2):  # a multirun makes one accelerator per job; the group must outlive them
        make_accelerator(OmegaConf.create({"device": "cpu", "mixed_precision": "no", "nan_policy": "fail",
                                           "grad_accum": 1}))
        assert dist.is_initialized()
""")


def test_process_group_is_destroyed_before_the_interpreter_finalizes():
    p = subprocess.run([sys.executable, "-c", LEAVES_AT_EXIT], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "initialized at exit: False" in p.stdout, p.stdout + p.stderr[-2000:]
