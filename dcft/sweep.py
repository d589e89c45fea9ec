"""Sweeps without running them: which run folders a sweep would create, and which are done.

    python -m dcft.sweep plan +sweep=table4                     # the runs of conf/sweep/table4.yaml
    python -m dcft.sweep plan +sweep=table4 model=minilm task=rte,cola --todo
    python -m dcft.sweep plan -m task=rte,mrpc kernel=2,8          # any command-line sweep
    python -m dcft.sweep list                                   # every sweep file and its size

`plan` takes exactly the arguments `python run.py` takes and expands them with Hydra's own
machinery: the config is composed in multirun mode, the sweeper's `params` and the command-line
overrides are parsed by Hydra's override parser and crossed by the basic sweeper's
`split_arguments`, and each job's config is composed the way the launcher does
(`load_sweep_config`) and its folder resolved from `hydra.sweep.dir`/`hydra.sweep.subdir`. So the
folders listed are the folders `run.py` would write. Each is then looked up: `completed` (a
relaunch skips it: `dcft.experiment.run` returns early), `failed` or `started` (a relaunch runs it
again), or `new`. Nothing is trained or written.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import OmegaConf

from dcft.config import CONF_DIR

SWEEP_DIR = CONF_DIR / "sweep"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class PlannedRun:
    """One job of a sweep: its overrides, its run folder and what a launch would do with it."""

    index: int
    overrides: list[str]
    run_dir: str
    status: str  # completed | failed | started | new | invalid
    detail: str = ""  # composition error of an invalid job, or the failure of a failed run


def _status(run_dir: Path) -> tuple[str, str]:
    from dcft.results import read_result

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


def plan(overrides: list[str], multirun: bool = False, config_dir: str | Path = CONF_DIR,
         config_name: str = "config") -> list[PlannedRun]:
    """The runs `python run.py <overrides>` (with `-m` if `multirun`) would launch, in launch order."""
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import open_dict

    from dcft.config import register

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
                return [PlannedRun(0, list(cfg.hydra.overrides.task), str(run_dir), *_status(run_dir))]

            cfg = hydra.compose_config(config_name, overrides, run_mode=RunMode.MULTIRUN)
            target = OmegaConf.select(cfg, "hydra.sweeper._target_")
            if target != BASIC_SWEEPER:
                raise ValueError(f"hydra.sweeper is {target}; plan expands the basic sweeper only")
            params = [f"{k}={v}" for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()]
            task_overrides = list(OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False))
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(params + task_overrides)
            jobs = BasicSweeper.split_arguments(parsed, None)[0]
            out = []
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
                out.append(PlannedRun(idx, job, str(run_dir), *_status(run_dir)))
            return out
    finally:
        GlobalHydra.instance().clear()


def sweep_files(sweep_dir: str | Path = SWEEP_DIR) -> list[Path]:
    return sorted(Path(sweep_dir).glob("*.yaml"))


def count_runs(path: str | Path, extra: list[str] | None = None) -> int:
    """How many runs a sweep file launches (its `hydra.sweeper.params` crossed with `extra`
    command-line overrides), from the override parser alone: no config is composed."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(extra or [])
    jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(lines), None)[0]
    return len(jobs)


def _command(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if "python run.py" in line:
            return line.lstrip("# ").split("   ")[0]
    return ""


def print_plan(runs: list[PlannedRun], todo: bool = False, file=None) -> None:
    """The plan as text: a summary line, then one line per run (`todo`: only those a launch runs)."""
    file = file or sys.stdout
    counts = {s: sum(r.status == s for r in runs) for s in ("completed", "failed", "started", "new", "invalid")}
    print(f"{len(runs)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
          + (f"; a launch runs {len(runs) - counts['completed'] - counts['invalid']} and skips "
             f"{counts['completed']} completed" if runs else ""), file=file)
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
    ap = argparse.ArgumentParser(prog="python -m dcft.sweep", description=__doc__.splitlines()[0])
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
