"""A study's configuration (`conf/study/<name>.yaml`) read into frozen dataclasses and checked.

A study declares everything specific to it: the run.py overrides its runs share, its tasks with
their budgets, its settings (a method and the run.py overrides that make it one row), the tuning rule,
its seeds, its groups (which settings run on which tasks, at which rate), its budget check, its
claims and what its report shows. The protocol that turns these into runs is `dcft.study.planner`;
the report is `dcft.study.report`. Every mistake a study file can hold is reported here, naming the
key, the value and what is valid, before anything runs (`load`).

Written in-house: the schema of this project's study files; parsed with OmegaConf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dcft.report.claims import KINDS as CLAIM_KINDS

ROOT = Path(__file__).resolve().parents[2]
RATE_RULES = ("tuned", "around", "of")  # a group's rate: its own grid | its own grid around a setting's rate | a setting's rate
GATES = ("best_core",)  # budget_check.gate: the core setting with the best held-out score
CHECK_RULES = ("interval_contains_zero",)  # budget_check.rule
LAST_SHORT = ("stop", "report")  # budget_check.last_short: what a last budget that fails the gate does
CENTRES = ("source",)  # tuning.centre
RECENTRES = ("previous_budget",)  # tuning.recentre
SELECT_ON = ("holdout", "dev")  # tuning.select_on: the run's best held-out score, or its best dev score (holdout 0)
CORE = "core"  # the group tuned first; the budget check's gate picks among it
TOP_KEYS = ("name", "title", "output_root", "report_dir", "compute_hours", "run", "tasks", "settings", "tuning",
            "seeds", "groups", "budget_check", "margins", "claims", "report")
REPORT_BLOCKS = ("summary", "table1", "paired", "ablations", "retuned", "learning_speed", "pareto", "frontier", "label",
                 "model_title", "compute")


class StudyError(ValueError):
    """A study file that cannot be run: names the key, the value and what is valid."""


@dataclass(frozen=True)
class TaskBudget:
    """One task of the study: the metric reported and the budget every setting trains with."""

    name: str
    metric: str  # validation/<metric>, reported x100
    budgets: tuple[int, ...]  # optimizer steps, walked in order (all but the last checked and found short)
    batch_size: int
    max_len: int
    eval_steps: int
    holdout: float

    @property
    def steps(self) -> int:
        """The budget the study reports at: the last one walked."""
        return self.budgets[-1]

    def overrides(self, steps: int) -> dict[str, Any]:
        """The run.py overrides of this task's budget at `steps` optimizer steps."""
        return {"task": self.name, "train.max_steps": steps, "train.batch_size": self.batch_size,
                "train.max_len": self.max_len, "train.eval_steps": self.eval_steps, "data.holdout": self.holdout}


@dataclass(frozen=True)
class Setting:
    """One row a study can report: a title, a method and the run.py overrides that differ from it."""

    name: str
    title: str
    method: str
    set: tuple[tuple[str, Any], ...] = ()

    def overrides(self) -> dict[str, Any]:
        return {"method": self.method, **dict(self.set)}


@dataclass(frozen=True)
class Tuning:
    """How a tuned setting's learning rate is chosen (the keys of the study file's `tuning:`)."""

    axis: str
    step: int  # ladder steps between grid points (dcft.ladder)
    either_side: int  # grid points either side of the centre
    centre: str
    recentre: str
    extend: int  # at most this many extensions of a grid whose best point is at its edge
    seed: int  # the tuning seed
    select_on: str


@dataclass(frozen=True)
class Rate:
    """A group's rate rule: `tuned`, or `around`/`of` another setting's selected rate."""

    rule: str
    setting: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    settings: tuple[str, ...]
    tasks: tuple[str, ...]
    rate: Rate
    parent: str | None = None  # the row the group's settings are compared with, paired by seed
    edition: int = 1
    skip: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (task, settings) the group leaves out on that task

    def runs(self, setting: str, task: str) -> bool:
        """Whether the group runs `setting` on `task`."""
        return setting in self.settings and task in self.tasks and setting not in dict(self.skip).get(task, ())

    def settings_on(self, task: str) -> list[str]:
        """The group's settings on `task`, in file order (none when the task is not the group's)."""
        return [s for s in self.settings if self.runs(s, task)]


@dataclass(frozen=True)
class BudgetCheck:
    gate: str
    also: tuple[str, ...]
    factor: int
    rule: str
    slope_evals: int
    last_short: str = "stop"  # stop: nothing more is planned for the task; report: the plan goes on, marked
    also_tasks: tuple[str, ...] = ()  # the tasks the `also` checks run on (empty: every task)

    def also_on(self, task: str) -> tuple[str, ...]:
        """The `also` settings checked on `task`."""
        return self.also if not self.also_tasks or task in self.also_tasks else ()


@dataclass(frozen=True)
class Claim:
    """A claim fixed before its runs: kind, settings (a, b or a chain), the tasks it is judged on."""

    name: str
    kind: str
    settings: tuple[str, ...]
    tasks: tuple[str, ...]
    group: str | None = None  # where it is shown: a group or a report block
    edition: int = 1


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    output_root: str
    report_dir: str
    compute_hours: float | None
    run: tuple[tuple[str, Any], ...]
    tasks: dict[str, TaskBudget]
    settings: dict[str, Setting]
    tuning: Tuning
    seeds: tuple[int, ...]
    groups: dict[str, Group]
    budget_check: BudgetCheck
    margins: dict[str, float]
    claims: tuple[Claim, ...]
    report: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def path_rel(self) -> str:
        """The study file's path relative to the repository root (as the report cites it)."""
        try:
            return Path(self.path).resolve().relative_to(ROOT).as_posix()
        except ValueError:
            return self.path

    def groups_of(self, setting: str, task: str) -> list[Group]:
        """The groups that run `setting` on `task`, in file order."""
        return [g for g in self.groups.values() if g.runs(setting, task)]

    def tuned_on(self, setting: str, task: str) -> bool:
        """Whether `setting` has its own grid on `task` (a group with rate tuned or around)."""
        return any(g.rate.rule != "of" for g in self.groups_of(setting, task))

    def core(self, task: str) -> list[str]:
        g = self.groups.get(CORE)
        return g.settings_on(task) if g else []


# ---- reading -----------------------------------------------------------------------------------------
def _fail(where: str, value: Any, valid: str) -> None:
    raise StudyError(f"study file: {where} = {value!r}: {valid}")


def _get(node: Mapping[str, Any], key: str, where: str, kind: type | tuple = object, default: Any = ...) -> Any:
    if key not in node:
        if default is not ...:
            return default
        raise StudyError(f"study file: {where}.{key} is missing")
    v = node[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, float, (int, float))):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        _fail(f"{where}.{key}", v, f"must be a {names}")
    return v


def _names(node: Any, where: str, valid: Mapping[str, Any] | tuple, what: str) -> tuple[str, ...]:
    if not isinstance(node, list) or not node:
        _fail(where, node, f"must be a non-empty list of {what}")
    for x in node:
        if x not in valid:
            _fail(where, x, f"not one of the study's {what}: {', '.join(valid)}")
    return tuple(node)


def _task(name: str, node: Any) -> TaskBudget:
    w = f"tasks.{name}"
    if not isinstance(node, dict):
        _fail(w, node, "must be a mapping of metric, budgets, batch_size, max_len, eval_steps, holdout")
    budgets = _get(node, "budgets", w, list)
    if not budgets or any(not isinstance(b, int) or isinstance(b, bool) or b <= 0 for b in budgets) \
            or list(budgets) != sorted(set(budgets)):
        _fail(f"{w}.budgets", budgets, "must be a non-empty list of increasing positive step counts")
    holdout = _get(node, "holdout", w, (int, float))
    if not 0 <= holdout < 1:
        _fail(f"{w}.holdout", holdout, "must be a fraction from 0 to below 1 (the held-out slice rates are selected "
              "on; 0 = none, with tuning.select_on: dev)")
    return TaskBudget(name, _get(node, "metric", w, str), tuple(budgets), _get(node, "batch_size", w, int),
                      _get(node, "max_len", w, int), _get(node, "eval_steps", w, int), float(holdout))


def _setting(name: str, node: Any) -> Setting:
    w = f"settings.{name}"
    if not isinstance(node, dict):
        _fail(w, node, "must be a mapping {title, method, set}")
    unknown = set(node) - {"title", "method", "set"}
    if unknown:
        _fail(f"{w}.{sorted(unknown)[0]}", node[sorted(unknown)[0]], "unknown key; valid: title, method, set")
    sets = _get(node, "set", w, dict, {})
    if "method" in sets or "train.lr" in sets or "seed" in sets:
        _fail(f"{w}.set", sets, "may not set method, train.lr or seed (the study chooses them)")
    return Setting(name, _get(node, "title", w, str), _get(node, "method", w, str), tuple(sets.items()))


def _rate(node: Any, where: str, settings: Mapping[str, Setting]) -> Rate:
    if node == "tuned":
        return Rate("tuned")
    if isinstance(node, dict) and len(node) == 1 and next(iter(node)) in ("around", "of"):
        (rule, of), = node.items()
        if of not in settings:
            _fail(f"{where}.{rule}", of, f"not one of the study's settings: {', '.join(settings)}")
        return Rate(rule, of)
    _fail(where, node, "must be tuned, {around: <setting>} or {of: <setting>}")


def _group(name: str, node: Any, study_tasks, settings) -> Group:
    w = f"groups.{name}"
    if not isinstance(node, dict):
        _fail(w, node, "must be a mapping {settings, tasks, rate, parent, edition, skip}")
    parent = _get(node, "parent", w, str, None)
    if parent is not None and parent not in settings:
        _fail(f"{w}.parent", parent, f"not one of the study's settings: {', '.join(settings)}")
    mine = _names(node.get("settings"), f"{w}.settings", settings, "settings")
    tasks = _names(node.get("tasks"), f"{w}.tasks", study_tasks, "tasks")
    skip = []
    for t, left in _get(node, "skip", w, dict, {}).items():
        if t not in tasks:
            _fail(f"{w}.skip.{t}", left, f"{t} is not one of the group's tasks: {', '.join(tasks)}")
        if not isinstance(left, list) or not left or any(x not in mine for x in left):
            _fail(f"{w}.skip.{t}", left, f"must be a non-empty list of the group's settings: {', '.join(mine)}")
        skip.append((t, tuple(left)))
    return Group(name, mine, tasks, _rate(node.get("rate"), f"{w}.rate", settings), parent,
                 _get(node, "edition", w, int, 1), tuple(skip))


def _claim(i: int, node: Any, study: dict[str, Any]) -> Claim:
    w = f"claims[{i}]"
    if not isinstance(node, dict):
        _fail(w, node, "must be a mapping {name, kind, settings, tasks, group, edition}")
    name = _get(node, "name", w, str)
    w = f"claims[{i}] ({name})"
    kind = _get(node, "kind", w, str)
    if kind not in CLAIM_KINDS:
        _fail(f"{w}.kind", kind, f"valid kinds: {', '.join(CLAIM_KINDS)}")
    settings = _names(node.get("settings"), f"{w}.settings", study["settings"], "settings")
    if (kind != "ordering" and len(settings) != 2) or len(settings) < 2:
        _fail(f"{w}.settings", list(settings), f"{kind} takes " + ("two settings" if kind != "ordering" else
                                                                     "a chain of two or more settings"))
    tasks = _names(node.get("tasks"), f"{w}.tasks", study["tasks"], "tasks")
    for t in tasks:
        for s in settings:
            if not any(g.runs(s, t) for g in study["groups"].values()):
                _fail(f"{w}.tasks", t, f"setting {s} runs on {t} in none of the study's groups (a claim is judged "
                      "on cells the study runs)")
        if kind == "as_good_as" and t not in study["margins"]:
            _fail(f"{w}.tasks", t, f"as_good_as needs an equivalence margin for {t} in margins "
                  f"(margins has: {', '.join(study['margins']) or 'none'})")
    group = _get(node, "group", w, str, None)
    where = (*study["groups"], *REPORT_BLOCKS)
    if group is not None and group not in where:
        _fail(f"{w}.group", group, f"not a group ({', '.join(study['groups'])}) or report block "
              f"({', '.join(REPORT_BLOCKS)})")
    return Claim(name, kind, settings, tasks, group, _get(node, "edition", w, int, 1))


def _check_rates(groups: Mapping[str, Group], study_tasks) -> None:
    """`{of: s}` and `{around: s}` need s tuned on every task of the group; the core group is tuned."""
    core = groups.get(CORE)
    if core is None or core.rate.rule != "tuned":
        _fail(f"groups.{CORE}", core and core.rate.rule, "the study needs a group `core` with rate: tuned "
              "(the budget check's gate chooses among it)")
    for g in groups.values():
        if g.rate.setting is None:
            continue
        for t in g.tasks:
            if not any(o.runs(g.rate.setting, t) and o.rate.rule != "of" for o in groups.values()):
                _fail(f"groups.{g.name}.rate.{g.rate.rule}", g.rate.setting,
                      f"that setting is not tuned on {t} by any group (rate tuned or around), so it has no "
                      "selected rate there")


def parse(raw: Mapping[str, Any], path: str = "") -> Study:
    """A study from its file's contents (a plain mapping)."""
    if not isinstance(raw, Mapping):
        _fail("(top level)", raw, "must be a mapping")
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        _fail(unknown[0], raw[unknown[0]], f"unknown key; valid: {', '.join(TOP_KEYS)}")
    tasks_node = _get(raw, "tasks", "(top level)", dict)
    tasks = {name: _task(name, node) for name, node in tasks_node.items()}
    settings = {name: _setting(name, node) for name, node in _get(raw, "settings", "(top level)", dict).items()}
    tn = _get(raw, "tuning", "(top level)", dict)
    tuning = Tuning(_get(tn, "axis", "tuning", str), _get(tn, "step", "tuning", int),
                    _get(tn, "either_side", "tuning", int), _get(tn, "centre", "tuning", str),
                    _get(tn, "recentre", "tuning", str), _get(tn, "extend", "tuning", int),
                    _get(tn, "seed", "tuning", int), _get(tn, "select_on", "tuning", str))
    for key, valid in (("axis", ("train.lr",)), ("centre", CENTRES), ("recentre", RECENTRES),
                       ("select_on", SELECT_ON)):
        if getattr(tuning, key) not in valid:
            _fail(f"tuning.{key}", getattr(tuning, key), f"valid: {', '.join(valid)}")
    for t in tasks.values():
        if (t.holdout > 0) != (tuning.select_on == "holdout"):
            _fail(f"tasks.{t.name}.holdout", t.holdout, f"tuning.select_on is {tuning.select_on}: "
                  + ("a held-out fraction above 0 is needed" if tuning.select_on == "holdout" else
                     "selecting on dev means no held-out slice (0)"))
    if tuning.step < 1 or tuning.either_side < 1 or tuning.extend < 0:
        _fail("tuning", {"step": tuning.step, "either_side": tuning.either_side, "extend": tuning.extend},
              "step and either_side must be >= 1, extend >= 0")
    seeds = _get(raw, "seeds", "(top level)", list)
    if not seeds or any(not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        _fail("seeds", seeds, "must be a non-empty list of distinct integers")
    if tuning.seed not in seeds:
        _fail("tuning.seed", tuning.seed, f"must be one of the seeds ({', '.join(map(str, seeds))})")
    groups = {name: _group(name, node, tasks, settings) for name, node in _get(raw, "groups", "(top level)",
                                                                                dict).items()}
    _check_rates(groups, tasks)
    bn = _get(raw, "budget_check", "(top level)", dict)
    check = BudgetCheck(_get(bn, "gate", "budget_check", str),
                        _names(bn["also"], "budget_check.also", settings, "settings") if bn.get("also") else (), _get(bn, "factor", "budget_check", int),
                        _get(bn, "rule", "budget_check", str), _get(bn, "slope_evals", "budget_check", int, 3),
                        _get(bn, "last_short", "budget_check", str, "stop"),
                        _names(bn["also_tasks"], "budget_check.also_tasks", tasks, "tasks") if "also_tasks" in bn else ())
    if check.gate not in GATES:
        _fail("budget_check.gate", check.gate, f"valid: {', '.join(GATES)}")
    if check.rule not in CHECK_RULES:
        _fail("budget_check.rule", check.rule, f"valid: {', '.join(CHECK_RULES)}")
    if check.last_short not in LAST_SHORT:
        _fail("budget_check.last_short", check.last_short, f"valid: {', '.join(LAST_SHORT)}")
    if check.factor < 2:
        _fail("budget_check.factor", check.factor, "must be an integer >= 2 (the check's steps = factor x budget)")
    for s in check.also:
        if not any(s in g.settings and g.rate.rule != "of" for g in groups.values()):
            _fail("budget_check.also", s, "a budget check runs at the setting's own selected rate: it must be tuned "
                  "by some group")
    margins = dict(_get(raw, "margins", "(top level)", dict, {}))
    for t, m in margins.items():
        if t not in tasks:
            _fail(f"margins.{t}", m, f"not one of the study's tasks: {', '.join(tasks)}")
        if not isinstance(m, (int, float)) or m <= 0:
            _fail(f"margins.{t}", m, "must be a positive number of score points (x100)")
    partial = {"settings": settings, "tasks": tasks, "groups": groups, "margins": margins}
    claims = tuple(_claim(i, c, partial) for i, c in enumerate(_get(raw, "claims", "(top level)", list, [])))
    names = [c.name for c in claims]
    dup = [n for n in names if names.count(n) > 1]
    if dup:
        _fail("claims.name", dup[0], "claim names must be distinct")
    report = dict(_get(raw, "report", "(top level)", dict, {}))
    for k in report:
        if k not in REPORT_BLOCKS:
            _fail(f"report.{k}", report[k], f"unknown report block; valid: {', '.join(REPORT_BLOCKS)}")
    summary = dict(report.get("summary") or {})
    if summary:
        named = next((c for c in claims if c.name == summary.get("claim")), None)
        if named is None or len(named.settings) != 2:
            _fail("report.summary.claim", summary.get("claim"), "must name a claim of two settings: "
                  + ", ".join(c.name for c in claims if len(c.settings) == 2))
        for n in summary.get("with", []):
            if n not in settings:
                _fail("report.summary.with", n, f"not one of the study's settings: {', '.join(settings)}")
    for gname in dict(report.get("retuned") or {}).get("groups", []):
        g = groups.get(gname)
        if g is None or g.parent is None or g.rate.rule == "of":
            _fail("report.retuned.groups", gname, "must name a group with a parent and its own grid (rate: tuned "
                  "or {around: s}); groups: " + ", ".join(groups))
    run = _get(raw, "run", "(top level)", dict, {})
    for k in ("task", "method", "seed", "train.lr", "train.max_steps"):
        if k in run:
            _fail(f"run.{k}", run[k], "set by the study per run (tasks, settings, tuning), not in run:")
    return Study(_get(raw, "name", "(top level)", str), _get(raw, "title", "(top level)", str, ""),
                 _get(raw, "output_root", "(top level)", str), _get(raw, "report_dir", "(top level)", str),
                 _get(raw, "compute_hours", "(top level)", (int, float), None), tuple(run.items()), tasks, settings,
                 tuning, tuple(seeds), groups, check, {t: float(m) for t, m in margins.items()}, claims, report,
                 str(path))


def load(path: str | Path) -> Study:
    """The study in `path` (a `conf/study/*.yaml`), or a study name (`cpu-minilm`) under conf/study/."""
    from omegaconf import OmegaConf

    p = Path(path)
    if not p.exists() and not p.suffix:
        p = ROOT / "conf" / "study" / f"{path}.yaml"
    if not p.exists():
        names = sorted(x.stem for x in (ROOT / "conf" / "study").glob("*.yaml"))
        raise StudyError(f"study file {path}: not found; the studies in conf/study/: {', '.join(names)}")
    return parse(OmegaConf.to_container(OmegaConf.load(p), resolve=True), str(p))
