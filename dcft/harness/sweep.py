"""Sweeps without running them: which run folders a sweep would create, and which are done.

    python -m dcft.harness.sweep plan +sweep=table4                     # the runs of conf/sweep/table4.yaml
    python -m dcft.harness.sweep plan +sweep=table4 model=minilm task=rte,cola --todo
    python -m dcft.harness.sweep plan -m task=rte,mrpc kernel=2,8          # any command-line sweep
    python -m dcft.harness.sweep list                                   # every sweep file and its size

`plan` takes exactly the arguments `python run.py` takes and expands them with Hydra's own
machinery: the config is composed in multirun mode, the sweeper's `params` and the command-line
overrides are parsed by Hydra's override parser and crossed by the basic sweeper's
`split_arguments`, and each job's config is composed the way the launcher does
(`load_sweep_config`) and its folder resolved from `hydra.sweep.dir`/`hydra.sweep.subdir`. So the
folders listed are the folders `run.py` would write. Each is then looked up: `completed` (a
relaunch skips it: `dcft.harness.experiment.run` returns early), `failed` or `started` (a relaunch runs it
again), or `new`. Nothing is trained or written.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from dcft.harness.config import CONF_DIR

SWEEP_DIR = CONF_DIR / "sweep"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class PlannedRun:
    """One job of a sweep: its overrides, its run folder and what a launch would do with it."""

    index: int
    overrides: list[str]
    run_dir: str
    status: str  # completed | failed | started | new | invalid | duplicate
    detail: str = ""  # why a job is invalid, the failure of a failed run, or the job it duplicates


def _status(run_dir: Path) -> tuple[str, str]:
    from dcft.report.results import read_result

    rec = read_result(run_dir)
    if rec is None:
        return "new", ""
    st = rec.get("status")
    if st == "completed":
        return "completed", ""
    if st == "failed":
        err = rec.get("error") or {}
        return "failed", f"{err.get('type', '')}: {err.get('message', '')}".strip(": ")
    return "started", f"status {st!r}: running now or interrupted"


def check_job(cfg) -> str:
    """Why a composed job would be rejected at launch ("" if it would start): the checks `run()`
    makes before it writes anything and that need no data or weights (method and task settings,
    kernel/stride on the model's meta-device architecture, the preset file)."""
    from dcft.harness.experiment import precheck
    from dcft.harness.reuse import hp_sources

    try:
        precheck(cfg)
        hp_sources(OmegaConf.to_container(cfg.hydra.runtime.choices) if "hydra" in cfg else None)
    except Exception as e:  # noqa: BLE001 - every rejection is reported, none is fatal to the plan
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return ""


def _planned(idx: int, job: list[str], cfg, run_dir: Path, seen: dict[str, int], validate: bool) -> PlannedRun:
    reason = check_job(cfg) if validate else ""
    if reason:
        return PlannedRun(idx, job, str(run_dir), "invalid", reason)
    if str(run_dir) in seen:
        return PlannedRun(idx, job, str(run_dir), "duplicate", f"same run as job {seen[str(run_dir)]}")
    seen[str(run_dir)] = idx
    return PlannedRun(idx, job, str(run_dir), *_status(run_dir))


def plan(overrides: list[str], multirun: bool = False, validate: bool = True, config_dir: str | Path = CONF_DIR,
         config_name: str = "config") -> list[PlannedRun]:
    """The runs `python run.py <overrides>` (with `-m` if `multirun`) would launch, in launch order.
    Each job is checked as `run()` checks it before writing anything (`validate`): a job that would
    be rejected is `invalid` with the reason; a job whose effective configuration another job of
    the sweep already has (e.g. LoRA crossed with DCFT kernels) is a `duplicate` of it."""
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import open_dict

    from dcft.harness.config import register

    register()
    overrides = list(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3", job_name="run"):
            hydra = GlobalHydra.instance().hydra
            loader = hydra.config_loader
            mode = hydra.get_mode(config_name=config_name, overrides=overrides)
            if multirun:
                mode = RunMode.MULTIRUN
            if mode != RunMode.MULTIRUN:  # a single run: hydra.run.dir
                cfg = hydra.compose_config(config_name, overrides, run_mode=RunMode.RUN)
                HydraConfig.instance().set_config(cfg)
                run_dir = Path(str(OmegaConf.select(cfg, "hydra.run.dir")))
                return [_planned(0, list(cfg.hydra.overrides.task), cfg, run_dir, {}, validate)]

            cfg = hydra.compose_config(config_name, overrides, run_mode=RunMode.MULTIRUN)
            target = OmegaConf.select(cfg, "hydra.sweeper._target_")
            if target != BASIC_SWEEPER:
                raise ValueError(f"hydra.sweeper is {target}; plan expands the basic sweeper only")
            params = [f"{k}={v}" for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()]
            task_overrides = list(OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False))
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(params + task_overrides)
            jobs = BasicSweeper.split_arguments(parsed, None)[0]
            out: list[PlannedRun] = []
            seen: dict[str, int] = {}
            for idx, job in enumerate(jobs):
                job = list(job)
                try:
                    job_cfg = loader.load_sweep_config(cfg, job)
                    with open_dict(job_cfg):
                        job_cfg.hydra.job.id = idx
                        job_cfg.hydra.job.num = idx
                    HydraConfig.instance().set_config(job_cfg)
                    run_dir = Path(str(OmegaConf.select(job_cfg, "hydra.sweep.dir"))) / str(
                        OmegaConf.select(job_cfg, "hydra.sweep.subdir"))
                except Exception as e:  # noqa: BLE001 - a job that cannot compose is reported, not fatal
                    out.append(PlannedRun(idx, job, "", "invalid", f"{type(e).__name__}: {e}".splitlines()[0]))
                    continue
                out.append(_planned(idx, job, job_cfg, run_dir, seen, validate))
            return out
    finally:
        GlobalHydra.instance().clear()


class SweepReport(Callback):
    """Hydra callback (`hydra.callbacks.sweep_report` in conf/config.yaml): at the end of a multirun,
    a summary of every job — trained, reused, refused, failed with its one-line reason — and a
    non-zero exit when any job failed or was refused. `run.py` returns each job's outcome; jobs run
    by a remote launcher (SLURM) report from their own processes, so for those the summary reads
    the run folders instead (`plan`)."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.jobs: list[dict] = []

    def on_multirun_start(self, config, **kwargs) -> None:
        self.active, self.jobs = True, []

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if not self.active:
            return
        from hydra.core.utils import JobStatus

        overrides = " ".join(config.hydra.overrides.task) if "hydra" in config else ""
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return._return_value, dict):
            self.jobs.append({"overrides": overrides, **job_return._return_value})
        else:  # an exception that escaped run.py's handler
            err = job_return._return_value
            self.jobs.append({"overrides": overrides, "outcome": "failed", "run_dir": "",
                              "reason": f"{type(err).__name__}: {err}".splitlines()[0]})

    def on_multirun_end(self, config, **kwargs) -> None:
        self.active = False
        jobs = self.jobs
        if not jobs:  # a remote launcher: read the folders
            runs = plan(list(config.hydra.overrides.task), multirun=True, validate=False)
            jobs = [{"overrides": " ".join(r.overrides), "run_dir": r.run_dir, "reason": r.detail,
                     "outcome": {"completed": "completed", "failed": "failed", "duplicate": "reused"}.get(
                         r.status, "not finished")} for r in runs]
        text, ok = sweep_summary(jobs)
        print(text, flush=True)
        if not ok:
            raise SystemExit(1)


def sweep_summary(jobs: list[dict]) -> tuple[str, bool]:
    """The end-of-sweep text and whether every job trained, was reused or completed."""
    order = ("trained", "completed", "reused", "refused", "failed", "not finished")
    counts = {o: sum(j.get("outcome") == o for j in jobs) for o in order}
    lines = [f"== sweep: {len(jobs)} jobs: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)]
    for j in jobs:
        if j.get("outcome") not in ("trained", "completed", "reused"):
            lines.append(f"   {j.get('outcome')}: {j.get('overrides')}: {j.get('reason', '')}")
    ok = counts["refused"] + counts["failed"] + counts["not finished"] == 0
    return "\n".join(lines), ok


def sweep_files(sweep_dir: str | Path = SWEEP_DIR) -> list[Path]:
    return sorted(Path(sweep_dir).glob("*.yaml"))


def sweep_jobs(path: str | Path, extra: list[str] | None = None) -> list[list[str]]:
    """The overrides of every job a sweep file launches (its `hydra.sweeper.params` crossed with
    `extra` command-line overrides), from the override parser alone: no config is composed."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(extra or [])
    return [list(job) for job in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(lines), None)[0]]


def count_runs(path: str | Path, extra: list[str] | None = None) -> int:
    """How many runs a sweep file launches (`sweep_jobs`)."""
    return len(sweep_jobs(path, extra))


def _command(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if "python run.py" in line:
            return line.lstrip("# ").split("   ")[0]
    return ""


def print_plan(runs: list[PlannedRun], todo: bool = False, file=None) -> None:
    """The plan as text: a summary line, then one line per run (`todo`: only those a launch runs)."""
    file = file or sys.stdout
    counts = {s: sum(r.status == s for r in runs)
              for s in ("completed", "failed", "started", "new", "duplicate", "invalid")}
    trains = counts["failed"] + counts["started"] + counts["new"]
    print(f"{len(runs)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
          + (f"; a launch runs {trains}, skips {counts['completed']} completed"
             + (f" and {counts['duplicate']} duplicate" if counts["duplicate"] else "")
             + (f", rejects {counts['invalid']} invalid" if counts["invalid"] else "") if runs else ""), file=file)
    shown = [r for r in runs if not (todo and r.status == "completed")]
    if not shown:
        return
    width = max(len(r.run_dir) for r in shown)
    for r in shown:
        line = f"  {r.index:>4}  {r.status:<9}  {r.run_dir or '(no folder)':<{width}}"
        if r.status == "invalid":
            line += f"  {' '.join(r.overrides)}"
        if r.detail:
            line += f"  [{r.detail}]"
        print(line.rstrip(), file=file)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dcft.harness.sweep", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="list the runs a sweep would launch and which already completed")
    p.add_argument("overrides", nargs="*", help="the arguments of `python run.py`, e.g. +sweep=table4 model=minilm")
    p.add_argument("-m", "--multirun", action="store_true", help="as `python run.py -m ...`")
    p.add_argument("--todo", action="store_true", help="list only runs a launch would run")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    ls = sub.add_parser("list", help="every conf/sweep file, its command and its number of runs")
    ls.add_argument("overrides", nargs="*", help="command-line overrides to cross with each sweep (e.g. task=rte)")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        for path in sweep_files():
            print(f"{path.stem:<26} {count_runs(path, args.overrides):>4} runs   {_command(path)}")
        return 0
    runs = plan(args.overrides, multirun=args.multirun)
    if args.json:
        print(json.dumps([asdict(r) for r in runs], indent=1))
    else:
        print_plan(runs, todo=args.todo)
    return 1 if any(r.status == "invalid" for r in runs) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`
        sys.stderr.close()
        sys.exit(0)
