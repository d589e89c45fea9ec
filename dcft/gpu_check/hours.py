"""Estimated GPU-hours of each paper table: every run of its sweep files (`conf/sweep/table<N>*.yaml`,
`figures.yaml`), composed as `run.py` composes it, costed by a stated model and calibrated on a time
the paper itself reports. An estimate, not a measurement.

    python -m dcft.gpu_check.hours                           # the table, on the authors' GPU
    python -m dcft.gpu_check.hours --from-check results/gpu-check/<gpu>-<date>.json   # on your GPU

The model of a run's time:

* training: optimizer steps x batch x max_len tokens (`train.max_steps`, else `ceil(epochs x
  ceil(train examples / (batch x grad_accum)))`; the authors' presets pad every batch to max_len);
* evaluation: every `eval_steps` steps and at the end, the dev set's examples x max_len tokens at a
  third of a training token's cost (a forward pass without the backward pass);
* per token: proportional to the backbone's non-embedding parameters (layers x (4 h^2 + 2 h i):
  attention projections and FFN; attention scores and embeddings left out), and 1.5x for full
  fine-tuning (weight gradients: ~6 instead of ~4 FLOPs per parameter and token; every PEFT method 1x);
* the constant: the paper's own training time of DCFT kernel 8 on SST-2, DeBERTaV3-base (Table 4:
  5.01 h, which includes evaluation, as the authors' HF Trainer counts it) divided by that run's
  cost, so the hours are on the authors' GPU, which the paper does not name.

`--from-check` takes the constant from a GPU check instead: the fp32 bench step of DCFT kernel 8
(fast path) on DeBERTaV3-base, per token (a random-weight step without data loading or logging: a
lower bound on a real run's time).

Runs are counted once per table even when several sweep files name them (one run folder); the
total counts each run folder once across tables. The model's error shows in the `check` lines: the
other Table 4 times the paper reports, estimated the same way.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

# GLUE (train, dev) examples; MNLI's dev is matched + mismatched; SQuAD counts questions (long contexts
# become a few more windows, left out).
EXAMPLES = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "qqp": (363846, 40430),
            "stsb": (5749, 1500), "mnli": (392702, 19647), "qnli": (104743, 5463), "rte": (2490, 277),
            "squad": (87599, 10570), "squad_v2": (130319, 11873)}
EVAL_COST = 1 / 3  # a dev token against a training token
FULL_FT_COST = 1.5  # full fine-tuning's token against a PEFT method's
# The calibration run and the times the paper reports for runs of its sweeps (Table 4, DCFT at stride = kernel).
CALIBRATION = ("deberta-v3-base", "sst2", 8, 5.01)  # model, task, kernel, hours
PAPER_HOURS = {("sst2", 8): 5.01, ("cola", 8): 0.54, ("qnli", 8): 10.19, ("rte", 8): 1.08, ("mrpc", 8): 0.98,
               ("stsb", 8): 0.63, ("sst2", 2): 9.57, ("cola", 2): 0.97, ("qnli", 2): 13.67, ("rte", 2): 1.63,
               ("mrpc", 2): 1.25, ("stsb", 2): 0.97}


@dataclass(frozen=True)
class Run:
    """One run of a sweep, with what its cost depends on."""

    run_dir: str
    model: str
    task: str
    method: str
    kernel: int | None
    steps: int
    batch: int
    max_len: int
    evals: int
    backbone: int  # non-embedding parameters of the backbone

    @property
    def cost(self) -> float:
        """Token-parameters of the run: training tokens, plus dev tokens at EVAL_COST, times the
        backbone's size (and FULL_FT_COST for full fine-tuning)."""
        dev = EXAMPLES[self.task][1]
        tokens = self.steps * self.batch * self.max_len + EVAL_COST * self.evals * dev * self.max_len
        return tokens * self.backbone * (FULL_FT_COST if self.method == "full" else 1.0)


def backbone_size(arch: dict[str, Any]) -> int:
    """layers x (4 h^2 + 2 h i): the attention projections and the FFN of every layer."""
    h, i, layers = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    return layers * (4 * h * h + 2 * h * i)


def optimizer_steps(train: dict[str, Any], n_train: int) -> int:
    """`max_steps` when positive, else ceil(epochs x steps per epoch) (`dcft.train.total_steps`)."""
    from dcft.train import total_steps

    per_epoch = math.ceil(math.ceil(n_train / train["batch_size"]) / train.get("grad_accum", 1))
    return total_steps(per_epoch, train["epochs"], train.get("max_steps", -1) or -1)


def run_of(resolved: dict[str, Any]) -> Run:
    """A composed, resolved run configuration as a `Run`."""
    from dcft.identity import declared_config, run_subdir

    train, task = resolved["train"], resolved["task"]["name"]
    n_train = EXAMPLES[task][0]
    if (resolved.get("data") or {}).get("limit_train"):
        n_train = min(n_train, resolved["data"]["limit_train"])
    steps = optimizer_steps(train, n_train)
    evals = steps // train["eval_steps"] + 1 if train.get("eval_steps", 0) > 0 else 1
    method = resolved["method"]
    return Run(run_subdir(declared_config(resolved)), resolved["model"]["name"], task, method["name"],
               method.get("kernel"), steps, train["batch_size"], train["max_len"], evals,
               backbone_size(resolved["model"]["arch"]))


def table_of(sweep: str) -> str:
    """"table4_full" -> "Table 4"; "table1_lr_..." -> "Table 1, lr grids"; "figures" -> "Figures 2-3"."""
    if sweep == "figures":
        return "Figures 2-3"
    number = sweep.removeprefix("table").split("_")[0]
    return f"Table {number}" + (", lr grids" if "_lr_" in sweep else "")


def sweep_runs(paths: Iterable[Path]) -> dict[str, list[Run]]:
    """Every job of each sweep file, composed as `run.py` composes it: {sweep name: runs}."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from dcft.config import CONF_DIR, register
    from dcft.sweep import sweep_jobs

    register()
    GlobalHydra.instance().clear()
    out: dict[str, list[Run]] = {}
    try:
        with initialize_config_dir(config_dir=str(Path(CONF_DIR).resolve()), version_base="1.3", job_name="run"):
            for path in paths:
                out[path.stem] = [run_of(OmegaConf.to_container(compose("config", overrides=job), resolve=True))
                                  for job in sweep_jobs(path)]
    finally:
        GlobalHydra.instance().clear()
    return out


def seconds_per_cost(runs: Iterable[Run], model: str, task: str, kernel: int, hours: float) -> float:
    """The constant: `hours` of the named DCFT run divided by its cost."""
    ref = next(r for r in runs if (r.model, r.task, r.method, r.kernel) == (model, task, "dcft", kernel))
    return hours * 3600 / ref.cost


def seconds_per_cost_from_check(record: dict[str, Any]) -> float:
    """The constant from a GPU check's fp32 bench: DCFT kernel 8's median step per token-parameter."""
    from dcft.config import load_group_file

    bench = record["bench"]["fp32"]
    row = next(r for r in bench["rows"] if r["label"] == "dcft-k8s8-fast")
    arch = load_group_file("model", bench["model"])["arch"]
    return row["step_s_median"] / (bench["batch"] * bench["seq_len"] * backbone_size(arch))


def estimate(by_sweep: dict[str, list[Run]], per_cost: float) -> list[dict[str, Any]]:
    """Rows per table (unique run folders): sweeps, runs, optimizer steps, estimated hours; then the total."""
    tables: dict[str, dict[str, Run]] = defaultdict(dict)
    sweeps: dict[str, list[str]] = defaultdict(list)
    for sweep, runs in by_sweep.items():
        sweeps[table_of(sweep)].append(sweep)
        for r in runs:
            tables[table_of(sweep)][r.run_dir] = r
    rows = [{"table": t, "sweeps": sweeps[t], "runs": len(rs), "steps": sum(r.steps for r in rs.values()),
             "hours": per_cost * sum(r.cost for r in rs.values()) / 3600}
            for t, rs in sorted(tables.items(), key=lambda kv: kv[0])]
    every = {d: r for rs in tables.values() for d, r in rs.items()}
    rows.append({"table": "all (each run once)", "sweeps": [], "runs": len(every),
                 "steps": sum(r.steps for r in every.values()),
                 "hours": per_cost * sum(r.cost for r in every.values()) / 3600})
    return rows


def paper_checks(runs: Iterable[Run], per_cost: float) -> list[tuple[str, float, float]]:
    """(run, estimated hours, hours the paper reports) for every DeBERTaV3-base DCFT run with a Table 4 time."""
    seen, out = set(), []
    for r in runs:
        key = (r.task, r.kernel)
        if r.model == "deberta-v3-base" and r.method == "dcft" and key in PAPER_HOURS and key not in seen:
            seen.add(key)
            out.append((f"{r.task} d={r.kernel}", per_cost * r.cost / 3600, PAPER_HOURS[key]))
    return sorted(out)


def markdown(rows: list[dict[str, Any]], checks: list[tuple[str, float, float]], source: str) -> str:
    lines = [f"Estimated GPU-hours ({source}):", "", "| paper table | sweep files | runs | optimizer steps | GPU-hours (estimate) |",
             "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['table']} | {', '.join(r['sweeps']) or '—'} | {r['runs']} | {r['steps']:,} | {r['hours']:,.0f} |")
    if checks:
        lines += ["", "The model against the times the paper reports (Table 4, DCFT): "
                  + "; ".join(f"{name} {est:.2f} h estimated, {paper:.2f} h reported ({est / paper:.2f}x)"
                              for name, est, paper in checks) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    from dcft.sweep import sweep_files

    ap = argparse.ArgumentParser(prog="python -m dcft.gpu_check.hours", description=__doc__.splitlines()[0])
    ap.add_argument("--from-check", default=None, help="a GPU check's JSON: its fp32 bench sets the time per token")
    args = ap.parse_args(argv)
    paths = [p for p in sweep_files() if p.stem.startswith("table") or p.stem == "figures"]
    by_sweep = sweep_runs(paths)
    runs = [r for rs in by_sweep.values() for r in rs]
    if args.from_check:
        record = json.loads(Path(args.from_check).read_text(encoding="utf-8"))
        per_cost = seconds_per_cost_from_check(record)
        source = f"time per token from the GPU check {Path(args.from_check).name} ({record['environment']['gpu']}, fp32 bench step)"
    else:
        model, task, kernel, hours = CALIBRATION
        per_cost = seconds_per_cost(runs, model, task, kernel, hours)
        source = (f"on the authors' GPU: calibrated on the paper's {hours} h for DCFT kernel {kernel} on "
                  f"{task.upper()}, {model}, Table 4")
    text = markdown(estimate(by_sweep, per_cost), paper_checks(runs, per_cost), source)
    print(text)
    return text


if __name__ == "__main__":
    main()
