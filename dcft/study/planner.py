"""The study protocol: which runs a study's finished runs call for next, and what they decided.

One protocol for every study file (`dcft.study.spec`); everything specific to a study is in its file.

1. **Tune** (groups with rate `tuned`, and `{around: s}`): a grid of `2 x either_side + 1` learning
   rates `step` places apart on the 1-2-3-5-8 ladder (`dcft.ladder`), centred on the setting's source
   rate (its configured `train.lr`), or for `{around: s}` on s's selected rate, at the tuning seed.
   The rate is **selected on the held-out slice** by `dcft.report.selection.choose` (the tables' protocol:
   best held-out score of the run at the tuning seed, ties to the smaller rate, one condition). A
   selected rate at the grid's edge adds the next ladder point beyond it, at most `extend` times.
2. **Budget check**, budget by budget (`tasks.<t>.budgets`, in order): the core grids run first
   (at a later budget centred on the rate the budget before selected); the gate is the core setting
   with the best held-out score at its selected rate (ties: the first in the group), run at every
   seed at that rate and at `factor` x the steps. The budget has converged when the 95 % interval
   of the paired (factor x - 1x) difference contains 0 (`interval_contains_zero`). A short budget
   moves the plan to the task's next budget; a short last budget stops the task with a message
   (`budget_check.last_short: stop`, the default).
3. Once the gate has converged at the task's last budget (or failed it, with `budget_check.last_short:
   report`: the report then marks the task not converged; with `report` the outcome cannot change what
   runs next, so these are planned while the last budget's check still runs): every core setting's seeds at its
   selected rate, the `budget_check.also` settings' checks (reported, not gating), then the other
   groups in file order: rate `tuned`/`{around: s}` (grid, extensions, then seeds at its own rate) or
   `{of: s}` (every seed at s's selected rate, untuned).

Finished runs are found by identity: a run belongs to a (task, setting, budget) when its declared
configuration (`dcft.report.tables.load_runs`, `dcft.harness.identity.declared_config`) has the task, the budget's
steps and the method node that Hydra composes for the setting's overrides. Public API:
`Decisions(study, runs)` (selections, cells, budget checks: what the report reads) and
`planned_runs(study, runs)` (the runs still to do).

Written in-house: the stage logic of this project's study protocol, not a library feature; the runs
themselves go through `run.py` and Hydra.
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from dcft.report import claims
from dcft.ladder import clean, ladder_step
from dcft.report.selection import Choice, choose
from dcft.study.spec import CORE, Setting, Study, Tuning

ROOT = Path(__file__).resolve().parents[2]
# A planned run's `stage`: tune | extend (a grid and its edge extensions, tuning seed) | budget_check (the gate) |
# seeds (at a setting's own selected rate) | also_check (budget_check.also) | rate_of (at an {of: s} rate).
ALSO_GROUP = "budget_check.also"  # the group of the `budget_check.also` checks' runs


def fmt_lr(v: float | None) -> str:
    """A rate as the study's files print it: 5.0e-03, 0.01."""
    if v is None:
        return "-"
    return f"{v:.1e}" if v < 1e-2 else repr(v)


def rate_grid(tuning: Tuning, centre: float) -> list[float]:
    """A tuning grid: `centre` and `either_side` points each side of it, `step` ladder places apart."""
    return [ladder_step(centre, k * tuning.step) for k in range(-tuning.either_side, tuning.either_side + 1)]


# ---- cells -------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One reported cell: dev score x100 per seed (at each run's best held-out step) and the runs behind it."""

    values: dict[int, float]
    runs: list[str]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values()) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values.values()) if self.n > 1 else math.nan


def paired(a: Cell, b: Cell) -> dict[str, Any] | None:
    """a - b over the seeds both have (`dcft.report.claims.paired`): per-seed differences, mean, std, 95 %
    t-interval; `exceeds` (seed noise) when the interval excludes 0, None with one seed."""
    p = claims.paired(a.values, b.values)
    if not p.n:
        return None
    lo, hi = p.interval(0.95)
    return {"seeds": list(p.seeds), "diffs": list(p.diffs), "mean": p.mean, "std": p.std, "lo": lo, "hi": hi,
            "exceeds": None if p.n < 2 else (lo > 0 or hi < 0)}


@dataclass
class Selection:
    """A setting's tuning on one task at one budget: the held-out score of each rate at the tuning
    seed, the rate chosen, whether it sits at the grid's edge, and what the planner does next."""

    task: str
    setting: Setting
    steps: int
    grid: list[float] = field(default_factory=list)  # the first grid (before extensions); [] while its centre is unknown
    scores: dict[float, float] = field(default_factory=dict)
    lr: float | None = None  # the best rate so far; the selected one once `state` is "selected"
    edge: str | None = None  # "low" / "high"
    choice: Choice | None = None
    state: str = "wait"  # wait (no centre yet) | tune (grid runs missing) | extend | selected
    tuning_seed: int = 6

    def describe(self) -> str:
        grid = ", ".join(f"{fmt_lr(lr)}: {s:.4f}" for lr, s in sorted(self.scores.items()))
        return f"selected {fmt_lr(self.lr)} on the held-out score of seed {self.tuning_seed} ({grid})"

    @property
    def next_rate(self) -> float | None:
        """The rate an edge extension adds."""
        return None if self.state != "extend" else self._beyond

    _beyond: float | None = None


@dataclass
class Check:
    """A budget check: `setting` at `lr` on `task`, every seed at `steps` and at `factor` x steps, paired
    by seed. `verdict`: running until both cells have every seed, then converged / not converged."""

    task: str
    setting: Setting
    steps: int
    factor: int
    lr: float
    base: Cell
    doubled: Cell
    seeds: int

    @property
    def doubled_steps(self) -> int:
        return self.factor * self.steps

    @property
    def difference(self) -> dict[str, Any] | None:
        return paired(self.doubled, self.base)

    @property
    def verdict(self) -> str:
        if self.base.n < self.seeds or self.doubled.n < self.seeds:
            return "running"
        return "not converged" if self.difference["exceeds"] else "converged"


# ---- the settings' identities ------------------------------------------------------------------------
def override(k: str, v: Any) -> str:
    """`k=v` as run.py's command line takes it (booleans lower case, rates as the study prints them)."""
    if isinstance(v, bool):
        v = str(v).lower()
    elif isinstance(v, float):
        v = fmt_lr(v) if k == "train.lr" else repr(v)
    return f"{k}={v}"


class Composer:
    """The config Hydra composes for a (task, setting): its declared method node and its source rate.

    Hydra composes once per (task, method), the costly part; a setting's `set` is then applied to that
    resolved config the way its interpolations read it (a dotted key in place; a top-level key, e.g.
    `kernel`, also into every method key that is `${kernel}`), and `dcft.harness.identity.declared_config`
    normalises the result as it does a run's."""

    def __init__(self, study: Study):
        self.study = study
        self._base: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._cache: dict[tuple[str, str], tuple[dict[str, Any], float, str]] = {}

    def __call__(self, task: str, setting: Setting) -> tuple[dict[str, Any], float, str]:
        """(declared method node, source learning rate, model name) of `setting` on `task`."""
        key = (task, setting.name)
        if key not in self._cache:
            self._cache[key] = self._apply(task, setting)
        return self._cache[key]

    def _apply(self, task: str, setting: Setting) -> tuple[dict[str, Any], float, str]:
        import copy

        import yaml

        from dcft.harness.identity import declared_config

        resolved, raw_method = self._composed(task, setting)
        cfg = copy.deepcopy(resolved)
        for k, v in setting.set:
            v = yaml.safe_load(v) if isinstance(v, str) else v  # as run.py's command line reads `targets=[query]`
            *parents, last = k.split(".")
            node = cfg
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = v
            if not parents:
                for mk, mv in raw_method.items():
                    if mv == "${" + k + "}":
                        cfg["method"][mk] = v
        declared = declared_config(cfg)
        return declared.get("method") or {}, float(cfg["train"]["lr"]), str(cfg["model"]["name"])

    def compose_all(self, pairs: Iterable[tuple[str, Setting]]) -> None:
        """Compose every (task, setting) of `pairs` under one Hydra initialisation (the slow part of a plan)."""
        todo = [(t, s) for t, s in pairs if (t, s.method) not in self._base]
        if todo:
            with self._hydra():
                self._depth += 1
                try:
                    for t, s in todo:
                        self._composed(t, s)
                finally:
                    self._depth -= 1

    _depth = 0

    def _hydra(self):
        """Hydra initialised on conf/ (once for a batch of compositions: `compose_all`)."""
        import contextlib

        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        from dcft.harness.config import CONF_DIR, register

        if self._depth:
            return contextlib.nullcontext()
        register()
        GlobalHydra.instance().clear()
        return initialize_config_dir(config_dir=str(Path(CONF_DIR).resolve()), version_base="1.3", job_name="run")

    def _composed(self, task: str, setting: Setting) -> tuple[dict[str, Any], dict[str, Any]]:
        key = (task, setting.method)
        if key not in self._base:
            from hydra import compose
            from omegaconf import OmegaConf

            overrides = [override(k, v) for k, v in {**dict(self.study.run), "method": setting.method,
                                                      "task": task}.items()]
            try:
                with self._hydra():
                    cfg = compose("config", overrides=overrides)
            except Exception as e:  # noqa: BLE001 - a study Hydra cannot compose is the study file's error
                from dcft.study.spec import StudyError

                raise StudyError(f"study file: settings.{setting.name} on task {task}: run.py cannot compose "
                                 f"{' '.join(overrides)}: {type(e).__name__}: {e}".splitlines()[0]) from e
            self._base[key] = (OmegaConf.to_container(cfg, resolve=True),
                               OmegaConf.to_container(cfg.method, resolve=False))
        return self._base[key]


# ---- decisions -----------------------------------------------------------------------------------------
class Decisions:
    """What a study's finished runs decided: selections, cells, budget checks, and the runs to do.

    `runs`: usable run records (`dcft.report.tables.load_runs(root).usable`)."""

    def __init__(self, study: Study, runs: list[dict[str, Any]], composer: Composer | None = None):
        self.study = study
        self.runs = runs
        self.compose = composer or Composer(study)
        self._sel: dict[tuple[str, str, int], Selection] = {}
        self._runs_of: dict[tuple[str, str, int], list[dict[str, Any]]] = {}  # runs are fixed for a Decisions
        self.messages: list[str] = []
        self.compose.compose_all((t, study.settings[n]) for g in study.groups.values() for n in g.settings
                                 for t in g.tasks if g.runs(n, t))

    # -- runs of a cell
    def runs_of(self, task: str, setting: Setting | str, steps: int | None = None) -> list[dict[str, Any]]:
        """The finished runs of `setting` on `task` at `steps` (default: the task's last budget), any rate
        and seed, found by their declared configuration."""
        s = self._setting(setting)
        steps = steps or self.study.tasks[task].steps
        key = (task, s.name, steps)
        if key not in self._runs_of:
            method, _, model = self.compose(task, s)
            self._runs_of[key] = [
                r for r in self.runs if r["task"] == task and r["method"] == s.method and r["model"] == model
                and (r["declared"].get("train") or {}).get("max_steps") == steps
                and all((r["declared"].get("method") or {}).get(k) == v for k, v in method.items())]
        return self._runs_of[key]

    def _setting(self, s: Setting | str) -> Setting:
        return s if isinstance(s, Setting) else self.study.settings[s]

    def done(self, task: str, setting: Setting, steps: int, lr: float, seed: int) -> bool:
        return any(r["seed"] == seed and math.isclose(float(r["lr"]), lr, rel_tol=1e-9)
                   for r in self.runs_of(task, setting, steps))

    def source_rate(self, task: str, setting: Setting | str) -> float:
        return self.compose(task, self._setting(setting))[1]

    # -- tuning
    def grid(self, centre: float) -> list[float]:
        return rate_grid(self.study.tuning, centre)

    def centre(self, task: str, setting: Setting, steps: int) -> float | None:
        """Where a tuned setting's grid at `steps` is centred: its source rate at its first budget, the
        rate the budget before selected at a later one (core), or the selected rate of the setting it
        is tuned around."""
        rule = next((g.rate for g in self.study.groups_of(setting.name, task) if g.rate.rule != "of"), None)
        if rule is not None and rule.rule == "around":
            return self.selected(task, self.study.settings[rule.setting], steps)
        budgets = self.study.tasks[task].budgets
        i = budgets.index(steps) if steps in budgets else 0
        if i == 0 or setting.name not in self.study.core(task):
            return clean(self.source_rate(task, setting))
        return self.selected(task, setting, budgets[i - 1])

    def selection(self, task: str, setting: Setting | str, steps: int | None = None) -> Selection:
        """The tuning state of a tuned setting (`Selection.state`) and its selected rate once chosen."""
        s = self._setting(setting)
        steps = steps or self.study.tasks[task].steps
        key = (task, s.name, steps)
        if key not in self._sel:
            self._sel[key] = self._select(task, s, steps)
        return self._sel[key]

    def _select(self, task: str, s: Setting, steps: int) -> Selection:
        t = self.study.tuning
        sel = Selection(task, s, steps, tuning_seed=t.seed)
        centre = self.centre(task, s, steps)
        if centre is None:
            return sel
        sel.grid = self.grid(centre)
        runs = self.runs_of(task, s, steps)
        sel.choice = choose(runs, tuning_seed=t.seed, seeds=self.study.seeds)
        sel.scores = {float(v[0]): float(x) for v, x in sel.choice.scores.items()}
        if sel.choice.values in sel.choice.scores:  # compared at the tuning seed (so far, while `tune`)
            sel.lr = float(sel.choice.values[0])
            if len(sel.scores) > 1 and sel.lr == min(sel.scores):
                sel.edge = "low"
            elif len(sel.scores) > 1 and sel.lr == max(sel.scores):
                sel.edge = "high"
        if any(not self.done(task, s, steps, lr, t.seed) for lr in sel.grid):
            sel.state = "tune"
            return sel
        extended = len(sel.scores) - len(sel.grid)
        if sel.edge and extended < t.extend:
            sel.state = "extend"
            sel._beyond = ladder_step(sel.lr, -t.step if sel.edge == "low" else t.step)
        else:
            sel.state = "selected"
        return sel

    def selected(self, task: str, setting: Setting | str, steps: int | None = None) -> float | None:
        """A tuned setting's selected rate, None until its grid (with extensions) is finished."""
        sel = self.selection(task, setting, steps)
        return sel.lr if sel.state == "selected" else None

    def rate(self, task: str, setting: Setting | str, rule_of: str | None = None, steps: int | None = None) -> float | None:
        """The rate a cell of `setting` runs at: its own selected rate when it is tuned on `task`, else
        (or with `rule_of`) the selected rate of the setting its `{of: s}` group names."""
        s = self._setting(setting)
        if rule_of is None and self.study.tuned_on(s.name, task):
            return self.selected(task, s, steps)
        of = rule_of or next((g.rate.setting for g in self.study.groups_of(s.name, task) if g.rate.rule == "of"), None)
        if of is None:
            return None
        return self.selected(task, of, steps)

    # -- cells
    def seeds_cell(self, runs: Iterable[dict[str, Any]], task: str) -> Cell:
        """The study's seeds among `runs` as a cell: dev scores x100 at each run's best held-out step."""
        metric = self.study.tasks[task].metric
        out = Cell({}, [])
        for r in runs:
            v = r["best"].get(f"validation/{metric}")
            if r["seed"] in self.study.seeds and v is not None:
                out.values[r["seed"]] = 100.0 * float(v)
                out.runs.append(r["run"])
        return out

    def cell(self, task: str, setting: Setting | str, lr: float | None, steps: int | None = None) -> Cell:
        """Every seed of `setting` at `lr` (one condition: `dcft.report.selection.choose` among the runs at it)."""
        if lr is None:
            return Cell({}, [])
        at = [r for r in self.runs_of(task, setting, steps) if math.isclose(float(r["lr"]), lr, rel_tol=1e-9)]
        return self.seeds_cell(choose(at, tuning_seed=self.study.tuning.seed, seeds=self.study.seeds).runs, task)

    # -- budget checks
    def check(self, task: str, setting: Setting | str, steps: int, lr: float) -> Check:
        s = self._setting(setting)
        f = self.study.budget_check.factor
        return Check(task, s, steps, f, lr, self.cell(task, s, lr, steps), self.cell(task, s, lr, f * steps),
                     len(self.study.seeds))

    def gate(self, task: str, steps: int) -> Check | None:
        """The budget check at `steps`: the core setting with the best held-out score at its selected rate
        (ties: the first in the group), once every core grid is selected; None before."""
        core = [self.study.settings[n] for n in self.study.core(task)]
        sels = [self.selection(task, s, steps) for s in core]
        if not core or any(x.state != "selected" or x.lr is None for x in sels):
            return None
        best = max(range(len(core)), key=lambda i: (sels[i].scores[sels[i].lr], -i))
        return self.check(task, core[best], steps, sels[best].lr)

    def checks(self, task: str) -> list[Check]:
        """The task's gate checks, budget by budget, that have runs at factor x their steps."""
        out = []
        for steps in self.study.tasks[task].budgets:
            c = self.gate(task, steps)
            if c is not None and self.runs_of(task, c.setting, c.doubled_steps):
                out.append(c)
        return out

    def also_checks(self, task: str) -> list[Check]:
        """The `budget_check.also` settings' checks at the task's last budget (reported, not gating), on the
        tasks of `budget_check.also_tasks`."""
        steps = self.study.tasks[task].steps
        out = []
        for name in self.study.budget_check.also_on(task):
            if self.study.tuned_on(name, task):
                lr = self.rate(task, name)
                if lr is not None:
                    out.append(self.check(task, name, steps, lr))
        return out

    def short(self, task: str) -> bool:
        """Whether the task's last budget failed its gate (its cells are reported as not converged)."""
        g = self.gate(task, self.study.tasks[task].steps)
        return g is not None and g.verdict == "not converged"

    # -- the plan
    @cached_property
    def todo(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for task in self.study.tasks:
            out += self._plan_task(task)
        return out

    def _run(self, task: str, s: Setting, steps: int, lr: float, seed: int, stage: str, group: str) -> dict[str, Any]:
        b = self.study.tasks[task]
        ov = {**dict(self.study.run), "output_root": self.study.output_root, **b.overrides(steps),
              **s.overrides(), "train.lr": lr, "seed": seed}
        return {"task": task, "setting": s.name, "method": s.method, "overrides": ov, "steps": steps, "lr": lr,
                "seed": seed, "stage": stage, "group": group}

    def _tuning_runs(self, task: str, s: Setting, steps: int, group: str) -> list[dict[str, Any]]:
        """A tuned setting's missing grid points, or its edge extension (tuning seed)."""
        sel = self.selection(task, s, steps)
        seed = self.study.tuning.seed
        if sel.state == "tune":
            return [self._run(task, s, steps, lr, seed, "tune", group) for lr in sel.grid
                    if not self.done(task, s, steps, lr, seed)]
        if sel.state == "extend":
            return [self._run(task, s, steps, sel.next_rate, seed, "extend", group)]
        return []

    def _seed_runs(self, task: str, s: Setting, steps: int, lr: float | None, stage: str, group: str):
        if lr is None:
            return []
        return [self._run(task, s, steps, lr, seed, stage, group) for seed in self.study.seeds
                if not self.done(task, s, steps, lr, seed)]

    def _check_runs(self, c: Check, stage: str, group: str) -> list[dict[str, Any]]:
        return (self._seed_runs(c.task, c.setting, c.steps, c.lr, stage, group)
                + self._seed_runs(c.task, c.setting, c.doubled_steps, c.lr, stage, group))

    def _plan_task(self, task: str) -> list[dict[str, Any]]:
        budgets = self.study.tasks[task].budgets
        core = [self.study.settings[n] for n in self.study.core(task)]
        out: list[dict[str, Any]] = []
        for i, steps in enumerate(budgets):
            last = i == len(budgets) - 1
            for s in core:
                out += self._tuning_runs(task, s, steps, CORE)
            gate = self.gate(task, steps)
            if gate is None:
                return out
            if gate.verdict == "running":
                out += self._check_runs(gate, "budget_check", CORE)
                if last and self.study.budget_check.last_short == "report":
                    # whatever the check says, the plan goes on at this budget: its runs need not wait for it
                    out += self._after_gate(task, steps)
                return out
            if gate.verdict == "not converged" and not last:
                continue
            d = gate.difference
            if gate.verdict == "not converged":
                moved = (f"{task}: the budget has not converged: {gate.setting.title} at {gate.factor}x the steps "
                         f"moved the dev score by {d['mean']:+.2f} (95 % interval [{d['lo']:+.2f}, {d['hi']:+.2f}])")
                if self.study.budget_check.last_short == "report":
                    self.messages.append(f"{moved}; budget_check.last_short is report: the plan goes on at {steps} "
                                         f"steps and the report marks {task} not converged.")
                    return out + self._after_gate(task, steps)
                self.messages.append(f"{moved}; add a longer budget to tasks.{task}.budgets (now {list(budgets)}). "
                                     f"Nothing more is planned for {task}.")
                return out
            if not last:
                self.messages.append(
                    f"{task}: the budget check converged at {steps} steps, before the last budget in "
                    f"tasks.{task}.budgets ({list(budgets)}): end the list there. Nothing more is planned for {task}.")
                return out
            return out + self._after_gate(task, steps)
        return out

    def _after_gate(self, task: str, steps: int) -> list[dict[str, Any]]:
        """Once the last budget's check converged (or, with `last_short: report`, started): the core seeds,
        the `also` checks, then every other group in file order."""
        out: list[dict[str, Any]] = []
        for name in self.study.core(task):
            out += self._seed_runs(task, self.study.settings[name], steps, self.rate(task, name), "seeds", CORE)
        gate = self.gate(task, steps)
        for c in self.also_checks(task):
            if c.setting.name != gate.setting.name:
                out += self._check_runs(c, "also_check", ALSO_GROUP)
        for g in self.study.groups.values():
            if g.name == CORE:
                continue
            for name in g.settings_on(task):
                s = self.study.settings[name]
                if g.rate.rule == "of":
                    out += self._seed_runs(task, s, steps, self.rate(task, s, rule_of=g.rate.setting), "rate_of", g.name)
                    continue
                tuning = self._tuning_runs(task, s, steps, g.name)
                out += tuning or self._seed_runs(task, s, steps, self.rate(task, s), "seeds", g.name)
        return out


def planned_runs(study: Study, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every run the study's finished runs call for now, in plan order, without duplicates: dicts with
    task, setting, method, overrides (run.py's, the setting's `set` included), steps, lr, seed, stage,
    group. Runs that depend on these (seeds after a grid, groups after the budget check) come later."""
    seen, out = set(), []
    d = Decisions(study, runs)
    for r in d.todo:
        key = (r["task"], r["setting"], r["steps"], r["lr"], r["seed"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    for m in d.messages:
        print(f"dcft.study: {m}", file=sys.stderr)
    return out


def load_runs(study: Study) -> list[dict[str, Any]]:
    """The study's usable finished runs (`dcft.report.tables.load_runs` under its output_root)."""
    from dcft.report.tables import load_runs as load

    root = Path(study.output_root)
    return load(root if root.is_absolute() else ROOT / root).usable
