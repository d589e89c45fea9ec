"""Estimated GPU-hours of each paper table: every run of its sweep files (`conf/sweep/table<N>*.yaml`,
`figures.yaml`), composed as `run.py` composes it, costed by `dcft.measure.cost` (its docstring states the model
of a run's time) and calibrated on a time the paper itself reports. An estimate, not a measurement.

    python -m dcft.gpu_check.hours                           # the table, on the authors' GPU
    python -m dcft.gpu_check.hours --from-check results/gpu-check/<gpu>-<date>.json   # on your GPU

A run's optimizer steps are `train.max_steps`, else `ceil(epochs x ceil(train examples / (batch x
grad_accum)))`; full fine-tuning costs 1.5x a PEFT method's token (weight gradients: ~6 instead of ~4
FLOPs per parameter and token). The constant is the `authors-gpu` entry of conf/cost/gpus.yaml: the
paper's own training time of DCFT kernel 8 on SST-2, DeBERTaV3-base (Table 4: 5.01 h, which includes
evaluation, as the authors' HF Trainer counts it) divided by that run's cost, so the hours are on the
authors' GPU.

`--from-check` takes the time from a GPU check instead: its fp32 bench step of each method's row (DCFT
at the run's kernel and stride, LoRA r=1 for the other PEFT methods, full fine-tuning), per token (a
random-weight step without data loading or logging: a lower bound on a real run's time).

Runs are counted once per table even when several sweep files name them (one run folder); the
total counts each run folder once across tables. The model's error shows in the `check` lines: the
other Table 4 times the paper reports, estimated the same way.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from dcft.measure.cost import EXAMPLES, Run, StepTime, backbone_size, evaluations, figures, from_file, held_out_examples, \
    optimizer_steps

# The times the paper reports for runs of its sweeps (Table 4, DCFT at stride = kernel).
PAPER_HOURS = {("sst2", 8): 5.01, ("cola", 8): 0.54, ("qnli", 8): 10.19, ("rte", 8): 1.08, ("mrpc", 8): 0.98,
               ("stsb", 8): 0.63, ("sst2", 2): 9.57, ("cola", 2): 0.97, ("qnli", 2): 13.67, ("rte", 2): 1.63,
               ("mrpc", 2): 1.25, ("stsb", 2): 0.97}
AUTHORS_GPU = "authors-gpu"  # conf/cost/gpus.yaml's entry timed on the paper's Table 4


def run_of(resolved: dict[str, Any]) -> Run:
    """A composed, resolved run configuration as a `Run`."""
    from dcft.harness.identity import declared_config, run_subdir

    train, task = resolved["train"], resolved["task"]["name"]
    n_train = EXAMPLES[task][0]
    if (resolved.get("data") or {}).get("limit_train"):
        n_train = min(n_train, resolved["data"]["limit_train"])
    steps = optimizer_steps(train, n_train)
    method = resolved["method"]
    holdout = (resolved.get("data") or {}).get("holdout")
    return Run(run_subdir(declared_config(resolved)), resolved["model"]["name"], task, method["name"],
               method.get("kernel"), steps, train["batch_size"], train["max_len"],
               evaluations(steps, train.get("eval_steps")), backbone_size(resolved["model"]["arch"]),
               held_out_examples(task, holdout), method.get("stride"))


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

    from dcft.harness.config import CONF_DIR, register
    from dcft.harness.sweep import sweep_jobs

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


def estimate(by_sweep: dict[str, list[Run]], time: StepTime) -> list[dict[str, Any]]:
    """Rows per table (unique run folders): sweeps, runs, optimizer steps, estimated hours; then the total."""
    tables: dict[str, dict[str, Run]] = defaultdict(dict)
    sweeps: dict[str, list[str]] = defaultdict(list)
    for sweep, runs in by_sweep.items():
        sweeps[table_of(sweep)].append(sweep)
        for r in runs:
            tables[table_of(sweep)][r.run_dir] = r
    every = {d: r for rs in tables.values() for d, r in rs.items()}
    groups = [*sorted(tables.items(), key=lambda kv: kv[0]), ("all (each run once)", every)]
    return [{"table": t, "sweeps": sweeps.get(t, []), "runs": len(rs), "steps": sum(r.steps for r in rs.values()),
             "hours": sum(time.seconds(r) for r in rs.values()) / 3600} for t, rs in groups]


def paper_checks(runs: Iterable[Run], time: StepTime) -> list[tuple[str, float, float]]:
    """(run, estimated hours, hours the paper reports) for every DeBERTaV3-base DCFT run with a Table 4 time."""
    seen, out = set(), []
    for r in runs:
        key = (r.task, r.kernel)
        if r.model == "deberta-v3-base" and r.method == "dcft" and key in PAPER_HOURS and key not in seen:
            seen.add(key)
            out.append((f"{r.task} d={r.kernel}", time.seconds(r) / 3600, PAPER_HOURS[key]))
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
    from dcft.harness.sweep import sweep_files

    ap = argparse.ArgumentParser(prog="python -m dcft.gpu_check.hours", description=__doc__.splitlines()[0])
    ap.add_argument("--from-check", default=None, help="a GPU check's JSON: its fp32 bench sets the time per token")
    args = ap.parse_args(argv)
    paths = [p for p in sweep_files() if p.stem.startswith("table") or p.stem == "figures"]
    by_sweep = sweep_runs(paths)
    runs = [r for rs in by_sweep.values() for r in rs]
    if args.from_check:
        time = from_file(args.from_check)
        source = f"time per token from the GPU check {Path(args.from_check).name} ({time.device}, fp32 bench step)"
    else:
        time = figures()[AUTHORS_GPU]
        source = f"on the authors' GPU: calibrated on {time.source}"
    text = markdown(estimate(by_sweep, time), paper_checks(runs, time), source)
    print(text)
    return text


if __name__ == "__main__":
    main()
