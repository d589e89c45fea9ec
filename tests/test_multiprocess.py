"""Two CPU processes (gloo, launched by `accelerate launch`) give the result of one process with
the same global batch, write one result file from the main process, into the same folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import ROOT
from test_experiment import write_learnable_rte

# Dropout off: ranks draw different dropout masks than a single process would.
COMMON = ["model=tiny-bert", "preset=none", "task=rte", "method=dcft", "kernel=4", "train.max_steps=12", "train.eval_steps=6",
          "train.lr=1e-2", "train.max_len=48", "train.progress=false", "train.checkpoint_steps=12",
          "+model.arch.hidden_dropout_prob=0.0", "+model.arch.attention_probs_dropout_prob=0.0",
          "train.cls_dropout=0.0"]


def _launch(prefix: list[str], args: list[str], cwd) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run(prefix + [str(ROOT / "run.py"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "terminate called" not in p.stderr, p.stderr[-3000:]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="the accelerate CLI is installed by `make install`")
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    glue = write_learnable_rte(tmp_path / "glue")
    _launch([sys.executable], COMMON + [f"data.glue_dir={glue}", "train.batch_size=32", f"output_root={tmp_path / 'one'}"],
            tmp_path)
    _launch(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
             "--mixed_precision", "no", "--dynamo_backend", "no"],
            COMMON + [f"data.glue_dir={glue}", "train.batch_size=16", f"output_root={tmp_path / 'two'}"], tmp_path)
    one, two = (list((tmp_path / d).rglob("result.json")) for d in ("one", "two"))
    assert len(one) == 1 and len(two) == 1  # every rank agreed on one folder; only the main process wrote
    r1, r2 = (json.loads(p[0].read_text()) for p in (one, two))
    assert (r1["processes"], r2["processes"]) == (1, 2)
    assert r2["data"]["eval_examples"] == r1["data"]["eval_examples"]  # nothing duplicated by gathering
    assert r2["train"]["final_loss"] == pytest.approx(r1["train"]["final_loss"], abs=1e-5)
    assert [h["score"] for h in r2["metrics"]["history"]] == [h["score"] for h in r1["metrics"]["history"]]
    w1, w2 = (torch.load(p[0].parent / "checkpoints" / "last.pt", weights_only=False)["trainable"] for p in (one, two))
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5)


# A checker registered before make_accelerator runs after it at exit (atexit is last-in, first-out).
LEAVES_AT_EXIT = textwrap.dedent("""
    import atexit, os, socket
    import torch.distributed as dist
    from omegaconf import OmegaConf
    from dcft.experiment import make_accelerator
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
