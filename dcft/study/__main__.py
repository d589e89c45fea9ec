"""Run a study from its file: `python -m dcft.study plan|next|run|report conf/study/<name>.yaml`.

* `plan`: every run the finished runs call for now, grouped by stage, with counts (runs that depend
  on these, e.g. seeds after a grid, appear once those have run).
* `next`: the `python run.py -m ...` sweeps that run them.
* `run [--jobs N]`: launches those sweeps through `run.py -m` (Hydra's multirun; with N > 1 Hydra's
  joblib launcher runs N side by side, each with its share of the CPU threads), asks the planner
  again, and repeats until nothing is left; then writes the report. Finished runs are skipped by the
  harness, so an interrupted study resumes where it stopped. On a cluster: add
  `--launcher slurm` (conf/hydra/launcher/slurm.yaml, Hydra's submitit launcher).
* `report`: the tables and figures (`dcft.study.report`), from the run files only.

Written in-house: a loop around Hydra's multirun; the launching is Hydra's.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from dcft.study.planner import ALSO_GROUP, ROOT, fmt_lr, load_runs, override, planned_runs
from dcft.study.spec import StudyError, load

JOBLIB_PACKAGE = "hydra-joblib-launcher"  # pip package of Hydra's joblib launcher


# ---- the sweeps ---------------------------------------------------------------------------------------------
def sweeps(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned runs as Hydra multiruns: runs that differ only in rate and seed share one sweep, and
    rates with the same seeds share one (lr x seed crossed); in plan order."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in runs:
        fixed = tuple((k, override(k, v)) for k, v in r["overrides"].items() if k not in ("train.lr", "seed"))
        out.setdefault(fixed, {"fixed": dict(fixed), "rates": {}, "first": r})["rates"].setdefault(r["lr"], []).append(
            r["seed"])
    result = []
    for sw in out.values():
        by_seeds: dict[tuple, list[float]] = {}
        for lr, seeds in sw["rates"].items():
            by_seeds.setdefault(tuple(sorted(seeds)), []).append(lr)
        for seeds, lrs in by_seeds.items():
            r = sw["first"]
            result.append({"task": r["task"], "setting": r["setting"], "stage": r["stage"], "group": r["group"],
                           "steps": r["steps"], "n": len(seeds) * len(lrs),
                           "lrs": ",".join(fmt_lr(x) for x in sorted(lrs)), "seeds": ",".join(map(str, seeds))})
            result[-1]["args"] = [*sw["fixed"].values(), f"train.lr={result[-1]['lrs']}", f"seed={result[-1]['seeds']}"]
    return result


def command(sweep: dict[str, Any], jobs: int = 1, launcher: str | None = None,
            launcher_args: tuple[str, ...] = ()) -> list[str]:
    """`python run.py -m <overrides>` for one sweep, with the launcher that runs its jobs (and its
    `hydra.*` settings, e.g. hydra.launcher.partition=gpu)."""
    extra = list(launcher_args)
    if launcher:
        extra.append(f"hydra/launcher={launcher}")
    elif jobs > 1:
        extra += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    return [sys.executable, "run.py", "-m", *sweep["args"], *extra]


def check_joblib() -> None:
    try:
        import hydra_plugins.hydra_joblib_launcher  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"python -m dcft.study run --jobs N (N > 1) runs N jobs side by side with Hydra's joblib "
                         f"launcher, which is not installed: pip install {JOBLIB_PACKAGE}") from e


# ---- the commands ---------------------------------------------------------------------------------------------
def plan_lines(runs: list[dict[str, Any]]) -> list[str]:
    """`plan`'s text: the runs to do per stage, then per sweep (task, group, setting, steps, rates, seeds)."""
    if not runs:
        return ["nothing left to run"]
    lines = [f"{len(runs)} runs to do now (the runs that depend on them, such as seeds at a grid's selected "
             "rate or the budget check, are planned once these have run)"]
    stages = Counter(r["stage"] for r in runs)
    lines.append("  by stage: " + ", ".join(f"{k} {v}" for k, v in stages.items()))
    tasks = Counter(r["task"] for r in runs)
    lines.append("  by task: " + ", ".join(f"{k} {v}" for k, v in tasks.items()))
    for stage in stages:
        lines.append(f"{stage} ({stages[stage]} runs):")
        for sw in sweeps([r for r in runs if r["stage"] == stage]):
            lines.append(f"  {sw['n']:>3}  {sw['task']:<6} {sw['group']:<18} {sw['setting']:<14} "
                         f"steps {sw['steps']:<5} lr {sw['lrs']}  seed {sw['seeds']}")
    return lines


def cost_lines(runs: list[dict[str, Any]], device: str | None = None) -> str:
    """`plan`'s estimated compute of `runs` per device (`dcft.measure.cost`: measured or stated step times)."""
    from dcft.measure.cost import estimate, table

    rows = estimate(runs, device)
    if not rows:
        return "estimated compute: no device has a step time (make bench, or a GPU in conf/cost/gpus.yaml)"
    return "estimated compute of these runs:\n" + table(rows)


def check_launcher_args(args: list[str]) -> tuple[str, ...]:
    """Only `hydra.*` overrides may be added at launch: anything else would change the runs, which the
    study file's `run:` and settings declare (and the planner would never find them finished)."""
    bad = [a for a in args if not a.startswith("hydra.")]
    if bad:
        raise StudyError(f"launch overrides {' '.join(bad)}: only hydra.* settings (e.g. "
                         "hydra.launcher.partition=gpu) may be added here; put run settings in the study file's run:")
    return tuple(args)


def narrow(study, runs: list[dict[str, Any]], tasks: str | None = None, groups: str | None = None) -> list[dict[str, Any]]:
    """The planned `runs` on the comma-separated `tasks` and in the `groups` only (a chunk of a study,
    e.g. `--tasks stsb,rte --groups core`); None = all. Unknown names are an error naming the valid ones."""
    def names(arg: str | None, valid: list[str], key: str) -> set[str] | None:
        if arg is None:
            return None
        chosen = {x.strip() for x in arg.split(",") if x.strip()}
        bad = sorted(chosen - set(valid))
        if bad or not chosen:
            raise StudyError(f"--{key} {arg}: {', '.join(bad) or 'empty'} not in the study; valid: {', '.join(valid)}")
        return chosen

    t = names(tasks, list(study.tasks), "tasks")
    g = names(groups, [*study.groups, ALSO_GROUP], "groups")
    return [r for r in runs if (t is None or r["task"] in t) and (g is None or r["group"] in g)]


def run_study(study, jobs: int = 1, launcher: str | None = None, max_passes: int = 1000,
              launcher_args: tuple[str, ...] = (), tasks: str | None = None, groups: str | None = None) -> int:
    """Launch the planned sweeps until none is left (or a pass makes no progress), then the report."""
    if jobs > 1 and not launcher:
        check_joblib()
    before = None
    for _ in range(max_passes):
        todo = narrow(study, planned_runs(study, load_runs(study)), tasks, groups)
        if not todo:
            print(f"{study.name}: nothing left to run" + (" in --tasks/--groups" if tasks or groups else ""))
            break
        keys = {(r["task"], r["setting"], r["steps"], r["lr"], r["seed"]) for r in todo}
        if keys == before:
            print(f"{study.name}: the last pass finished none of its {len(todo)} runs (see the failures above); "
                  "stopping", file=sys.stderr)
            return 1
        before = keys
        for sw in sweeps(todo):
            cmd = command(sw, jobs, launcher, launcher_args)
            print("+ " + " ".join(cmd[1:]), flush=True)
            # joblib's workers start with OMP_NUM_THREADS = cores // jobs unless the environment sets it
            subprocess.run(cmd, cwd=ROOT, check=False)
    from dcft.study.report import report

    report(study)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dcft.study", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, text in (("plan", "every run still to do, by stage"), ("next", "the run.py sweeps that run them"),
                       ("run", "run them until none is left, then the report"),
                       ("report", "tables and figures from the run files (never trains)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("study", help="conf/study/<name>.yaml, or the name")
        if name != "report":
            p.add_argument("--tasks", default=None, help="only these tasks, comma-separated (a chunk of the study)")
            p.add_argument("--groups", default=None,
                           help=f"only these groups, comma-separated (the study's groups, or {ALSO_GROUP})")
        if name == "run":
            p.add_argument("--jobs", type=int, default=1, help="runs side by side (Hydra's joblib launcher)")
            p.add_argument("--launcher", default=None, help="a Hydra launcher config instead, e.g. slurm")
            p.add_argument("hydra", nargs="*", metavar="hydra.KEY=VALUE",
                           help="launcher settings added to every sweep, e.g. hydra.launcher.partition=gpu")
        if name == "plan":
            p.add_argument("--device", default=None,
                           help="estimate the compute on this device only: a GPU named in conf/cost/gpus.yaml or "
                                "a make bench / GPU check file (default: every named GPU and the newest bench file "
                                "of each device for the study's model)")
        if name == "report":
            p.add_argument("--runs", default=None, help="the run folder (default: the study's output_root)")
            p.add_argument("--out", default=None, help="where tables/ and figures/ go (default: its report_dir)")
    args = ap.parse_args(argv)
    try:
        study = load(args.study)
        if args.cmd == "report":
            from dcft.study.report import report

            report(study, args.runs, args.out)
            return 0
        if args.cmd == "run":
            if args.jobs < 1:
                ap.error(f"--jobs {args.jobs}: must be 1 or more")
            return run_study(study, args.jobs, args.launcher, launcher_args=check_launcher_args(args.hydra),
                             tasks=args.tasks, groups=args.groups)
        todo = narrow(study, planned_runs(study, load_runs(study)), args.tasks, args.groups)
    except StudyError as e:
        print(f"python -m dcft.study: {e}", file=sys.stderr)
        return 2
    if args.cmd == "plan":
        print(f"{study.name} ({study.path_rel}): " + "\n".join(plan_lines(todo)))
        if todo:
            print("\n" + cost_lines(todo, args.device))
    else:
        print("\n".join(shlex.join(["python", *command(sw)[1:]]) for sw in sweeps(todo)) or "nothing left to run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
