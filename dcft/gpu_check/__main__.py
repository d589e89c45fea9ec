"""`python -m dcft.gpu_check` (`make gpu-check`): see `dcft.gpu_check`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from dcft.gpu_check import ESTIMATED_MINUTES, SECTIONS
from dcft.gpu_check.verdict import Verdict, exit_code, guarded, headline, markdown_table, to_records


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dcft.gpu_check",
                                 description="Whether the harness is right and fast on this GPU (refuses without CUDA).")
    ap.add_argument("--glue-dir", default=None,
                    help="GLUE folder for the MiniLM SST-2 runs (data.glue_dir; default: the Hugging Face Hub)")
    ap.add_argument("--out", default="results/gpu-check", help="folder of <gpu>-<date>.json and .md")
    ap.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    ap.add_argument("--bench-batch", type=int, default=None, help="bench batch (default: the paper's, 32)")
    ap.add_argument("--bench-seq-len", type=int, default=None, help="bench sequence length (default 320)")
    ap.add_argument("--bench-repeats", type=int, default=None, help="timed steps per bench setting (default 10)")
    ap.add_argument("--train-steps", type=int, default=None, help="steps of each MiniLM run (default 300)")
    ap.add_argument("--keep-runs", action="store_true", help="keep the run folders under <out>/<gpu>-<date>-runs/")
    args = ap.parse_args(argv)
    for name, value, low in (("--bench-batch", args.bench_batch, 1), ("--bench-seq-len", args.bench_seq_len, 2),
                             ("--bench-repeats", args.bench_repeats, 1)):
        if value is not None and value < low:
            ap.error(f"{name} {value}: must be >= {low}")
    if args.train_steps is not None and (args.train_steps < 100 or args.train_steps % 100):
        ap.error(f"--train-steps {args.train_steps}: must be a positive multiple of 100 (the CPU study's runs, whose "
                 "seed spread sets the tolerance, evaluate every 100 steps)")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - set(SECTIONS):
        ap.error(f"--skip: unknown sections {sorted(skip - set(SECTIONS))}; valid: {', '.join(SECTIONS)}")
    args.skip = skip
    return args


def log(msg: str) -> None:
    print(f"[gpu-check] {msg}", file=sys.stderr, flush=True)


def kernel_rows(device) -> list[Verdict]:
    from dcft.gpu_check.kernels import kernel_checks

    rows: list[Verdict] = []
    for section, name, fn in kernel_checks(device):
        rows += guarded(section, name, fn)
        log(f"{name}: {rows[-1].outcome}")
    return rows


def bench_rows(device, args, record: dict[str, Any]) -> list[Verdict]:
    from dcft.gpu_check import benchmark

    kw = {k: v for k, v in (("batch", args.bench_batch), ("seq_len", args.bench_seq_len),
                            ("repeats", args.bench_repeats)) if v is not None}
    rows: list[Verdict] = []
    record["bench"] = {}
    for precision in benchmark.PRECISIONS:
        def one(precision: str = precision) -> list[Verdict]:
            result = benchmark.run_bench(device, precision, log=log, **kw)
            record["bench"][precision] = result
            return benchmark.bench_verdicts(result)
        rows += guarded(f"bench {precision}", f"make bench, {precision}", one)
    return rows


def training_rows(args, runs_dir: Path, record: dict[str, Any]) -> list[Verdict]:
    from dcft.gpu_check import training

    kw = {"steps": args.train_steps} if args.train_steps else {}
    recs = {}
    for precision in training.PRECISIONS:
        log(f"MiniLM SST-2, mixed_precision={precision}")
        recs[precision] = training.train(precision, runs_dir / f"minilm-{precision}", args.glue_dir, **kw)
    record["training"] = {p: {k: r.get(k) for k in ("run_dir", "status", "precision", "train", "metrics", "losses")}
                          for p, r in recs.items()}
    seeds = [training.read_run(training.STUDY_RUNS / name) for name in training.SEED_RUNS]
    return training.training_verdicts(recs["no"], recs["bf16"], training.read_run(training.REFERENCE_RUN), seeds)


def parallel_rows(runs_dir: Path) -> list[Verdict]:
    import torch

    from dcft.gpu_check import parallel

    if torch.cuda.device_count() < 2:
        return [Verdict("data parallel", "accelerate launch --num_processes 2 = one process", "2+ GPUs", "—",
                        "skipped", f"{torch.cuda.device_count()} GPU visible")]
    one, two = parallel.run_pair(runs_dir / "data-parallel")
    return parallel.same_run(one, two)


def main(argv: list[str] | None = None) -> int:
    from dcft.gpu_check.environment import environment, require_cuda

    args = parse_args(argv)
    device = require_cuda()  # before any work: the check never runs, let alone passes, without CUDA
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from dcft.gpu_check import report

    record: dict[str, Any] = {"schema_version": report.SCHEMA_VERSION,
                              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "environment": environment(device), "argv": sys.argv,
                              "estimated_minutes": sum(ESTIMATED_MINUTES[s] for s in SECTIONS if s not in args.skip),
                              "minutes": {}}
    out_dir = Path(args.out)
    runs_dir = out_dir / f"{report.stem(record)}-runs" if args.keep_runs else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    log(f"{record['environment']['gpu']}: about {record['estimated_minutes']} minutes")
    sections: dict[str, Callable[[], list[Verdict]]] = {
        "kernels": lambda: kernel_rows(device),
        "bench": lambda: bench_rows(device, args, record),
        "training": lambda: guarded("training", "MiniLM SST-2 runs", lambda: training_rows(args, runs_dir, record)),
        "parallel": lambda: guarded("data parallel", "two processes = one", lambda: parallel_rows(runs_dir)),
    }
    verdicts: list[Verdict] = []
    try:
        for name in SECTIONS:
            if name in args.skip:
                continue
            t0 = time.perf_counter()
            verdicts += sections[name]()
            record["minutes"][name] = (time.perf_counter() - t0) / 60
    finally:
        record["verdicts"] = to_records(verdicts)
        json_path, md_path = report.write(record, out_dir)
        if not args.keep_runs:
            shutil.rmtree(runs_dir, ignore_errors=True)
    print(markdown_table(verdicts))
    print(f"\n{headline(verdicts)}\nwritten: {json_path}\n         {md_path}")
    return exit_code(verdicts)


if __name__ == "__main__":
    sys.exit(main())
