"""`make bench` on the GPU: DeBERTaV3-base (built from `conf/model/deberta-v3-base.yaml`, random
weights) at the authors' batch and sequence length, DCFT kernel 8 and 2 on the fast and the
reference path, DCFT through the peft tuner, LoRA r=1, full fine-tuning and the head-only floor,
with merged inference; float32 and bf16 autocast; step time and peak memory (`dcft.measure.bench`).

Batch 32 is every DeBERTaV3-base script's batch (`hyperparameters.md`); 320 tokens is the most common
of their `max_len` values (RTE, MRPC, QQP; the others use 64 to 512), and their scripts pad every
batch to it, so 32 x 320 is the step most of the paper's DeBERTaV3-base runs take.

Verdict rows: the loss equalities of `dcft.measure.bench.checks` are correctness (`fail` when missed); its
step-time, memory and merged-latency targets are speed targets (`missed`); the step times and peak
memory of every setting are `info`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from dcft.measure import bench
from dcft.gpu_check.verdict import Verdict

MODEL = "deberta-v3-base"
BATCH = 32
SEQ_LEN = 320
REPEATS = 10
SHAPES = ((8, 8), (2, 2))
ONLY = ("dcft-k8s8-fast", "dcft-k8s8-reference", "dcft-k2s2-fast", "dcft-k2s2-reference", "dcft-k8s8-fast-peft",
        "full", "dcft-k8s8-merged", "dcft-k2s2-merged")
PRECISIONS = ("fp32", "bf16")


def run_bench(device: torch.device, precision: str, batch: int = BATCH, seq_len: int = SEQ_LEN,
              repeats: int = REPEATS, log: Callable[[str], None] = print, model: str = MODEL) -> dict[str, Any]:
    """One `dcft.measure.bench` run of the settings above at `precision` on `device` (writes nothing)."""
    return bench.run(model=model, device=str(device), batch=batch, seq_len=seq_len, repeats=repeats,
                     shapes=SHAPES, only=list(ONLY), precision=precision, log=log)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def bench_verdicts(result: dict[str, Any]) -> list[Verdict]:
    """The verdict rows of one bench result (see the module doc)."""
    precision = result.get("precision", "fp32")
    section = f"bench {precision}"
    out = []
    for c in result["checks"]:
        correctness = "loss" in c["check"]
        value = c["value"]
        measured = "—" if value is None else (f"{value:.2e}" if correctness else f"{value:.3f}")
        ok = value is not None and value <= c["limit"]
        out.append(Verdict(section, c["check"], f"<= {c['limit']:g}", measured,
                           "pass" if ok else ("fail" if correctness else "missed")))
    train = [r for r in result["rows"] if r["phase"] == "train"]
    out.append(Verdict(section, f"step time, ms (batch {result['batch']} x {result['seq_len']}, median of "
                                f"{result['repeats']})", "recorded",
                       ", ".join(f"{r['label']} {_ms(r['step_s_median'])}" for r in train), "info"))
    out.append(Verdict(section, "peak memory of a step, MiB", "recorded",
                       ", ".join(f"{r['label']} {r['peak_mem_bytes'] / 2**20:,.0f}" for r in train), "info"))
    inference = [r for r in result["rows"] if r["phase"] == "inference"]
    if inference:
        out.append(Verdict(section, "inference latency, ms", "recorded",
                           ", ".join(f"{r['label']} {_ms(r['step_s_median'])}" for r in inference), "info"))
    return out
