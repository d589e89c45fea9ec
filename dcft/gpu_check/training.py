"""A short real training on the GPU, through the harness (`run.py`, `dcft.harness.experiment`): MiniLM on
SST-2 with DCFT kernel 8, exactly the CPU study's Table 1 run (`REFERENCE_RUN`: its preset, learning
rate, seed and every other setting, read from its committed result file) but for the number of steps
(`STEPS`), in float32 and in bf16 autocast.

What passes, the bf16 run against the float32 run (same data order, same initial weights):

* both complete and record their precision;
* the first logged loss (mean of steps 1-10, before training has amplified any rounding difference)
  within 8 u relative, u = 2^-8 the unit roundoff of bf16 (autocast rounds the inputs of every
  matrix product to 8 significant bits; the loss carries a handful of such relative errors);
* the last logged loss and the final dev accuracy within what another seed changes: 2 sqrt(2) sigma,
  sigma the seed-to-seed standard deviation of that number at that step in the CPU study's three seeds
  of the same setting (`SEED_RUNS`; the difference of two runs has sqrt(2) sigma, and 2 of those
  is a two-sided 95 % band): a precision may perturb the run like a seed does, not more.

The time per step of each run is shown beside the CPU study's run (`info`: other hardware, other
load; the CPU run shared its 2 cores with a second run).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from dcft.gpu_check.verdict import Verdict

ROOT = Path(__file__).resolve().parents[2]
STUDY_RUNS = ROOT / "results" / "cpu-study" / "runs" / "minilm" / "sst2" / "dcft"
SEED_RUNS = ("kernel=8,stride=8,targets=all,lr=0.005,seed=6-fdd007b7",
             "kernel=8,stride=8,targets=all,lr=0.005,seed=7-48d6c315",
             "kernel=8,stride=8,targets=all,lr=0.005,seed=8-59b4c115")
REFERENCE_RUN = STUDY_RUNS / SEED_RUNS[0]  # seed 6, the harness's default seed
STEPS = 300
FIRST_LOSS_RTOL = 8 * 2.0 ** -8
SEED_BAND = 2 * math.sqrt(2)  # multiples of the seed-to-seed standard deviation a precision may move a number
DEV_KEY = "validation/accuracy"
PRECISIONS = ("no", "bf16")  # train.mixed_precision values: float32, bf16 autocast


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's result record with its logged training losses (`losses`: {step: loss})."""
    rec = json.loads((Path(run_dir) / "result.json").read_text(encoding="utf-8"))
    log = Path(run_dir) / "log.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    rec["losses"] = {r["step"]: r["loss"] for r in map(json.loads, lines) if r.get("type") == "train"}
    return rec


def reference_overrides(rec: dict[str, Any]) -> list[str]:
    """The `run.py` overrides that compose a committed run's configuration: its model, task, preset
    and method-settings choices, its method's settings, learning rate and seed, no tracker."""
    cfg, choices = rec["config"], rec["choices"]
    stride = cfg.get("stride")
    return [f"model={choices['model']}", f"task={choices['task']}", f"preset={choices['preset']}",
            f"baseline_hp={choices['baseline_hp']}", f"method={choices['method']}", f"kernel={cfg['kernel']}",
            f"stride={'null' if stride is None else stride}", f"targets={cfg['targets']}",
            f"train.lr={cfg['train']['lr']}", f"seed={cfg['seed']}", "logger=none"]


def run_overrides(rec: dict[str, Any], precision: str, output_root: Path, glue_dir: str | None,
                  steps: int = STEPS, device: str = "cuda") -> list[str]:
    """The reference run's overrides at `steps` steps and `precision`, on `device`, into `output_root`."""
    out = reference_overrides(rec) + [f"train.max_steps={steps}", f"train.mixed_precision={precision}",
                                      f"train.device={device}", "train.progress=false", "train.overwrite=true",
                                      f"output_root={output_root}"]
    if glue_dir:
        out.append(f"data.glue_dir={glue_dir}")
    return out


def train(precision: str, output_root: Path, glue_dir: str | None, steps: int = STEPS, device: str = "cuda",
          env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the reference configuration at `precision` through `run.py` on `device`; its record."""
    from dcft.gpu_check.parallel import launch

    output_root.mkdir(parents=True, exist_ok=True)
    launch([sys.executable], run_overrides(read_run(REFERENCE_RUN), precision, output_root, glue_dir, steps, device),
           ROOT, timeout=4 * 3600, env=env)
    found = sorted(output_root.rglob("result.json"))
    if len(found) != 1:
        raise RuntimeError(f"expected one result file under {output_root}, found {len(found)}")
    return read_run(found[0].parent)


def seed_spread(step: int, runs: list[dict[str, Any]]) -> dict[str, float]:
    """Seed-to-seed standard deviation of the dev accuracy and of the logged loss at `step` over `runs`."""
    dev = [next(h[DEV_KEY] for h in r["metrics"]["history"] if h["step"] == step) for r in runs]
    loss = [r["losses"][step] for r in runs]
    return {"dev": statistics.stdev(dev), "loss": statistics.stdev(loss)}


def _dev(rec: dict[str, Any]) -> float:
    return rec["metrics"]["final"][DEV_KEY]


def training_verdicts(fp32: dict[str, Any], bf16: dict[str, Any], cpu: dict[str, Any],
                      seeds: list[dict[str, Any]]) -> list[Verdict]:
    """The verdict rows of the two GPU runs (records from `read_run`), against the CPU reference
    run `cpu` and the seed runs `seeds` (see the module doc)."""
    section = "training"
    rows = []
    for rec, want in ((fp32, "no"), (bf16, "bf16")):
        ok = rec.get("status") == "completed" and rec.get("precision") == want
        rows.append(Verdict(section, f"MiniLM SST-2 run, mixed_precision={want}", f"completed, precision {want}",
                            f"{rec.get('status')}, precision {rec.get('precision')}", "pass" if ok else "fail",
                            (rec.get("error") or {}).get("message", "")))
    if any(r.outcome == "fail" for r in rows):
        return rows
    first = min(fp32["losses"])
    last = max(fp32["losses"])
    a, b = fp32["losses"][first], bf16["losses"].get(first, math.nan)
    rel = abs(b - a) / abs(a)
    rows.append(Verdict(section, f"first logged loss (step {first}), bf16 vs fp32", f"relative diff <= {FIRST_LOSS_RTOL:.3g} (8 u)",
                        f"{b:.4f} vs {a:.4f}, relative {rel:.2e}", "pass" if rel <= FIRST_LOSS_RTOL else "fail"))
    spread = seed_spread(last, seeds)
    a, b = fp32["losses"][last], bf16["losses"].get(last, math.nan)
    limit = SEED_BAND * spread["loss"]
    rows.append(Verdict(section, f"last logged loss (step {last}), bf16 vs fp32",
                        f"|diff| <= {limit:.3f} (2 sqrt2 x seed std {spread['loss']:.3f})",
                        f"{b:.4f} vs {a:.4f}", "pass" if abs(b - a) <= limit else "fail"))
    a, b = _dev(fp32), _dev(bf16)
    limit = SEED_BAND * spread["dev"]
    rows.append(Verdict(section, f"dev accuracy at step {last}, bf16 vs fp32",
                        f"|diff| <= {limit:.4f} (2 sqrt2 x seed std {spread['dev']:.4f})",
                        f"{b:.4f} vs {a:.4f}", "pass" if abs(b - a) <= limit else "fail"))
    env = cpu.get("environment") or {}
    cpu_rate = cpu["train"]["steps_per_s"]
    where = f"{env.get('cpu_count')} {env.get('cpu')} cores, CPU study run {Path(cpu['run_dir']).name}"
    for rec, name in ((fp32, "fp32"), (bf16, "bf16")):
        rate = rec["train"]["steps_per_s"]
        rows.append(Verdict(section, f"steps per second, {name}, GPU beside CPU", "recorded",
                            f"{rate:.2f} on the GPU, {cpu_rate:.2f} on {where} ({rate / cpu_rate:.1f}x)", "info"))
    return rows
