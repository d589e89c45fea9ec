"""Data parallelism: `accelerate launch --num_processes 2` at batch 16 per process must give the run
of one process at batch 32 (the same global batch), write one result file from the main process,
into the same folder. The CPU test (`tests/test_multiprocess.py`, two gloo processes) and the GPU
check (two CUDA devices, NCCL) launch the same pair of runs and compare them with `same_run`.

The runs: the tiny BERT on a learnable RTE-format task written on the fly (`dcft.data.toy`), DCFT
kernel 4, 12 steps at lr 1e-2, every dropout off (processes draw other dropout masks than one
process would). Tolerances, float32: the final training loss within 1e-5 absolute, the dev scores
of every evaluation identical (64 examples: a reduction-order difference flips no prediction here),
the trained tensors within 1e-4 relative + 1e-5 absolute (12 steps of AdamW amplify the
reduction-order differences of the gradient all-reduce, ~1e-7, by at most a few hundred).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from dcft.gpu_check.verdict import Verdict

ROOT = Path(__file__).resolve().parents[2]
RUNS = ["model=tiny-bert", "preset=none", "task=rte", "method=dcft", "kernel=4", "train.max_steps=12",
        "train.eval_steps=6", "train.lr=1e-2", "train.max_len=48", "train.progress=false",
        "train.checkpoint_steps=12", "+model.arch.hidden_dropout_prob=0.0",
        "+model.arch.attention_probs_dropout_prob=0.0", "train.cls_dropout=0.0"]
GLOBAL_BATCH = 32
LOSS_ATOL = 1e-5
WEIGHT_RTOL, WEIGHT_ATOL = 1e-4, 1e-5
ACCELERATE_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                     "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


OFFLINE = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # the pair's runs: no Hub, one thread per process


def launch(prefix: list[str], args: list[str], cwd: Path, timeout: int = 600,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`<prefix> run.py <args>` in `cwd` with `env` added to the environment; raises with the end of
    stderr when it fails or a process aborts at exit."""
    p = subprocess.run(prefix + [str(ROOT / "run.py"), *args], cwd=cwd, env={**os.environ, **(env or {})},
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0 or "terminate called" in p.stderr:
        raise RuntimeError(f"{' '.join(prefix[-3:])} run.py exited {p.returncode}:\n{p.stderr[-3000:]}")
    return p


def run_pair(workdir: Path, extra: list[str] = ()) -> tuple[Path, Path]:
    """The one-process run (batch 32) and the two-process run (batch 16 each) under `workdir`;
    returns their output roots (`workdir/one`, `workdir/two`)."""
    from dcft.data.toy import write_learnable_rte

    glue = write_learnable_rte(workdir / "glue")
    common = RUNS + [f"data.glue_dir={glue}", *extra]
    one, two = workdir / "one", workdir / "two"
    launch([sys.executable], common + [f"train.batch_size={GLOBAL_BATCH}", f"output_root={one}"], workdir, env=OFFLINE)
    launch(ACCELERATE_LAUNCH, common + [f"train.batch_size={GLOBAL_BATCH // 2}", f"output_root={two}"], workdir,
           env=OFFLINE)
    return one, two


def same_run(one_root: Path, two_root: Path, section: str = "data parallel") -> list[Verdict]:
    """Verdict rows: one result file each (only the main process wrote), 1 and 2 processes, the same
    evaluation sets (nothing duplicated by gathering), final loss, dev scores and trained tensors
    equal within the module's tolerances."""
    one, two = (sorted(Path(r).rglob("result.json")) for r in (one_root, two_root))
    rows = [Verdict(section, "one result file per launch (main process writes)", "1 and 1",
                    f"{len(one)} and {len(two)}", "pass" if len(one) == len(two) == 1 else "fail")]
    if rows[0].outcome == "fail":
        return rows
    r1, r2 = (json.loads(p[0].read_text()) for p in (one, two))

    def row(check: str, expected: str, measured: str, ok: bool) -> None:
        rows.append(Verdict(section, check, expected, measured, "pass" if ok else "fail"))

    row("processes recorded", "1 and 2", f"{r1['processes']} and {r2['processes']}",
        (r1["processes"], r2["processes"]) == (1, 2))
    row("evaluation examples (nothing duplicated)", str(r1["data"]["eval_examples"]), str(r2["data"]["eval_examples"]),
        r2["data"]["eval_examples"] == r1["data"]["eval_examples"])
    loss_diff = abs(r2["train"]["final_loss"] - r1["train"]["final_loss"])
    row("final training loss, 2 processes vs 1", f"|diff| <= {LOSS_ATOL:g}", f"{loss_diff:.2e}", loss_diff <= LOSS_ATOL)
    s1, s2 = ([h["score"] for h in r["metrics"]["history"]] for r in (r1, r2))
    row("dev score of every evaluation", "identical", f"{s2} vs {s1}", s1 == s2)
    w1, w2 = (torch.load(p[0].parent / "checkpoints" / "last.pt", weights_only=False, map_location="cpu")["trainable"]
              for p in (one, two))
    worst = max((float(((w1[k] - w2[k]).abs() / (WEIGHT_ATOL + WEIGHT_RTOL * w1[k].abs())).max())
                 for k in w1.keys() & w2.keys()), default=float("inf"))
    row("trained tensors, 2 processes vs 1", f"same names; |diff| <= {WEIGHT_RTOL:g} |w| + {WEIGHT_ATOL:g}",
        f"{'same' if w1.keys() == w2.keys() else 'different'} names; excess {worst:.2g}",
        w1.keys() == w2.keys() and worst <= 1)
    return rows
