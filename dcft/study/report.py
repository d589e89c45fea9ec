"""A study's tables, figures and claim verdicts (`python -m dcft.study report conf/study/<name>.yaml`),
from its run files only (never trains), shaped by the study file's `report:` block. Every cell is
traceable: the runs behind it are listed in `tables/cells.csv`, every tuning run with its held-out
and dev scores in `tables/selection.csv`.

Tables (`<report_dir>/tables/*.md` and `.csv`):

* `summary` (`report.summary`): one claim's two settings task by task, with its verdict, the `with`
  settings' cells and the budget checks' verdicts (the first table of a study's README).

* `table1` (`report.table1`): each setting per task: dev score at each run's best held-out step, mean
  +- sample std over the seeds at the rate selected on the held-out slice (`dcft.study.planner`,
  the tables' protocol `dcft.report.selection`), the rate, and the adapter's trainable parameters of those
  runs (#Params, classifier head aside; SoRA and AdaLoRA: the mean live count, with its range).
* `paired` (`report.paired`): each of its settings minus every setting it is compared with, per seed
  (the same seed holds out the same rows and draws the same batches), mean, sample std and the 95 %
  t-interval of the mean difference; a difference *exceeds seed noise* when that interval excludes 0.
* `ablations` (`report.ablations`): each ablation group's variants at their parent's selected rate,
  by what they vary (kernel, stride, targets, init), against the parent paired by seed.
* `frontier` (`report.frontier`): its curves' settings, each at its own selected rate, with #Params.
* `retuned` (`report.retuned`): the variants of groups with their own grid, at the parent's rate and at
  their own, each against the parent, and whether the ablation's verdict moves with the rate.
* `convergence`: the budget checks (the gate at each budget walked, and `budget_check.also`).
* `learning_speed` (`report.learning_speed`): dev score at the first evaluations against a baseline.
* `tie_rule`: every verdict above again with the latest of a run's tied best held-out steps.
* `claims`: the verdict of every claim on every task (`dcft.report.claims`'s rules; the README's "Studies").
* `compute`: the wall time the runs took.

Figures (`<report_dir>/figures/*.png`): `pareto`, `learning_curves`, `convergence`, `ablations`, and
`frontier` (score against #Params, the LoRA and DCFT curves of `report.frontier`, written once it
has cells).

Written in-house: the tables of this project's study protocol; plots with matplotlib.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcft.report import claims as C
from dcft.report.selection import BEST_STEP_RULE, at_best_step, tied_steps
from dcft.report.tables import TASK_LABEL
from dcft.study.planner import Cell, Decisions, Selection, fmt_lr, load_runs, paired
from dcft.study.spec import ROOT, Setting, Study

BEST_STEP_NOTE = ("Best step: each run's best held-out step is the first evaluation at its highest held-out score; "
                  f"where several evaluations tie at it, the {BEST_STEP_RULE} counts (dcft.report.selection.BEST_STEP_RULE: "
                  "what the training loop records). The study under the other rule (the latest tied step): "
                  "tie_rule.md.")
TARGET_ORDER = ("qk", "qv", "qkv", "qkvo", "all")  # the paper's Table 6 rows, smallest first
WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
NOT_RUN = "not run yet"  # a claim's verdict while a cell has no seed


# ---- formatting -------------------------------------------------------------------------------------
def _fmt(c: Cell, seeds: int, digits: int = 2) -> str:
    if not c.n:
        return "-"
    if c.n == 1:
        return f"{c.mean:.{digits}f} (n=1)"
    return f"{c.mean:.{digits}f} ± {c.std:.{digits}f}" + ("" if c.n == seeds else f" (n={c.n})")


def _seeds_text(study: Study) -> str:
    return ", ".join(map(str, study.seeds))


def cell_params(runs: list[dict[str, Any]], names: list[str]) -> tuple[float, int, int] | None:
    """The adapter size behind a reported cell: the mean count of the runs named (run folders, the cell's
    seeds at its selected rate), with the smallest and the largest. SoRA and AdaLoRA prune while they train,
    so their live count varies by run; every other method's is one number."""
    named = set(names)
    counts = [int(r["params_method"]) for r in runs if r["run"] in named and r["params_method"] is not None]
    return (statistics.fmean(counts), min(counts), max(counts)) if counts else None


def _params_text(p: tuple[float, int, int] | None) -> str:
    if p is None:
        return "-"
    mean, low, high = p
    return f"{low:,}" if low == high else f"{mean:,.0f} ({low:,} to {high:,})"


def _md(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _selection_mark(sel, lr: float) -> str:
    """`selected` for the chosen rate of a finished grid, `best so far` while the grid still runs."""
    if not (sel.lr and math.isclose(lr, sel.lr)):
        return ""
    return "selected" if sel.state == "selected" else "best so far"


def _write(out: Path, stem: str, title: str, notes: list[str], header: list[str], rows: list[list[str]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(f"# {title}\n\n" + _md(header, rows) + "\n" + "\n".join(f"- {n}" for n in notes)
                                    + "\n", encoding="utf-8")
    with open(out / f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _paired_text(p: dict[str, Any] | None) -> list[str]:
    if p is None:
        return ["-"] * 4
    diffs = ", ".join(f"{x:+.2f}" for x in p["diffs"])
    if p["exceeds"] is None:  # one seed: a difference, no spread and no interval yet
        return [diffs, f"{p['mean']:+.2f} (n=1)", "-", "-"]
    return [diffs, f"{p['mean']:+.2f} ± {p['std']:.2f}", f"[{p['lo']:+.2f}, {p['hi']:+.2f}]",
            "yes" if p["exceeds"] else "no"]


def _times(factor: int) -> str:
    return "twice" if factor == 2 else f"{factor}x"


# ---- what the report block selects -------------------------------------------------------------------
def in_order(study: Study, names: list[str]) -> list[Setting]:
    """The settings of the named groups (and settings named directly, first), in the file's row order."""
    direct = [n for n in names if n in study.settings]
    grouped = {s for n in names if n in study.groups for s in study.groups[n].settings}
    return [study.settings[n] for n in direct] + [s for n, s in study.settings.items()
                                                  if n in grouped and n not in direct]


def table_settings(study: Study) -> list[Setting]:
    return in_order(study, list(study.report.get("table1", {}).get("groups", [])))


def _label(study: Study) -> str:
    return study.report.get("label", study.name)


Cells = dict[tuple[str, str], tuple[Selection, Cell]]


def table1_cells(d: Decisions) -> Cells:
    """(task, setting) -> (its selection, its cell at the selected rate) for every table setting the
    study runs on the task (at the task's last budget)."""
    out = {}
    for task in d.study.tasks:
        for s in table_settings(d.study):
            if d.study.groups_of(s.name, task):
                sel = d.selection(task, s)
                out[(task, s.name)] = (sel, d.seeds_cell(sel.choice.runs if sel.lr is not None and sel.choice else
                                                         [], task))
    return out


def _tasks(study: Study, cells: Cells) -> list[str]:
    """The tasks with a reported cell."""
    return [t for t in study.tasks if any(k[0] == t and v[1].n for k, v in cells.items())]


def _cell_row(task: str, table: str, title: str, lr: float | None, c: Cell) -> list[Any]:
    """One line of `cells.csv`: a reported cell and the run folders behind it."""
    return [task, table, title, fmt_lr(lr), f"{c.mean:.4f}", f"{c.std:.4f}", c.n, " ".join(c.runs)]


def left_out(study: Study, tasks: list[str]) -> str:
    """The study's tasks with no cell yet and the (setting, task) pairs of the table no group runs, in words."""
    parts = []
    waiting = [t for t in study.tasks if t not in tasks]
    if waiting:
        parts.append(f"{', '.join(waiting)} (not run yet)")
    for s in table_settings(study):
        missing = [t for t in tasks if not study.groups_of(s.name, t)]
        if missing:
            parts.append(f"{s.title} on {', '.join(missing)}")
    return "; ".join(parts) or "none"


def paired_differences(d: Decisions, cells: Cells, tasks: list[str]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(task, "DCFT k8 - LoRA r=1", `paired`) for each `report.paired.settings` against every other setting
    of `against`, where both cells exist."""
    block = d.study.report.get("paired", {})
    mine = [d.study.settings[n] for n in block.get("settings", [])]
    mine = [s for s in table_settings(d.study) if s in mine]
    others = [s for s in in_order(d.study, list(block.get("against", []))) if s not in mine]
    return [(t, f"{a.title} - {o.title}", paired(cells[(t, a.name)][1], cells[(t, o.name)][1]))
            for t in tasks for o in others for a in mine if (t, a.name) in cells and (t, o.name) in cells]


# ---- tables --------------------------------------------------------------------------------------------
def write_tables(d: Decisions, out: Path) -> dict[str, Any]:
    study = d.study
    cells = table1_cells(d)
    tasks = _tasks(study, cells)
    rows, csv_cells = [], []
    for s in table_settings(study):
        behind = [r for t in tasks if (t, s.name) in cells for r in cells[(t, s.name)][1].runs]
        row = [s.title, _params_text(cell_params(d.runs, behind))]
        for t in tasks:
            sel, c = cells.get((t, s.name), (None, Cell({}, [])))
            row.append(_fmt(c, len(study.seeds)) + (f" @ {fmt_lr(sel.lr)}" if sel and sel.lr and c.n else "")
                       + ("" if not c.n else " (grid unfinished)" if sel.state in ("tune", "extend", "wait")
                          else f" (grid's {sel.edge} edge)" if sel.edge else ""))
            if sel and c.n:
                csv_cells.append(_cell_row(t, "table1", s.title, sel.lr, c))
        rows.append(row)
    metrics = ", ".join(f"{t}: {study.tasks[t].metric}" for t in tasks)
    notes = [f"Dev score x100 ({metrics}) at each run's best held-out step; mean ± sample std over seeds "
             f"{_seeds_text(study)} (n shown when fewer), at the learning rate (after @) selected on the held-out slice "
             f"by seed {study.tuning.seed} (dcft.study.planner); - = not run.",
             f"(grid's high / low edge): the selected rate is the largest / smallest tried so far; the study widens "
             f"a grid at its edge at most {study.tuning.extend} times (tuning.extend in {study.path_rel}), so once it "
             "has, a better rate may lie beyond it.",
             "#Params: the adapter's trainable parameters, classifier head aside, of the runs behind the row's cells "
             "(SoRA, AdaLoRA: the live count after training, which pruning makes vary by run: the mean over the "
             "cells' seeds at the selected rate, with the range).", BEST_STEP_NOTE,
             f"Left out (the groups of {study.path_rel}): {left_out(study, tasks)}.",
             "Runs behind each cell: cells.csv."]
    short = [t for t in tasks if d.short(t)]
    if short:
        notes.insert(-2, f"(not converged): the task's budget failed its budget check (convergence.md); its cells are "
                         f"reported at that budget (budget_check.last_short: report), where the best core setting still "
                         f"gained at {_times(study.budget_check.factor)} the steps.")
    _write(out, "table1", study.report["table1"].get("title", "Table 1"), notes,
           ["setting", "#Params", *(f"{t} (not converged)" if t in short else t for t in tasks)], rows)
    sel_rows = []
    tuned = sorted((t, n) for t in study.tasks for n in study.settings if study.tuned_on(n, t))
    for t, name in tuned:
        s = study.settings[name]
        sel = d.selection(t, s)
        for r in sorted(d.runs_of(t, s), key=lambda r: (r["seed"], r["lr"])):
            if r["seed"] == study.tuning.seed:
                v = r["best"].get(f"validation/{study.tasks[t].metric}")
                sel_rows.append([t, s.title, fmt_lr(float(r["lr"])), f"{100 * r['selection_score']:.2f}",
                                 f"{100.0 * float(v):.2f}" if v is not None else "-",
                                 _selection_mark(sel, float(r["lr"])), r["run"]])
    _write(out, "selection", f"Learning-rate selection (seed {study.tuning.seed})",
           ["Held-out and dev scores x100 of every tuning run; the rate with the best held-out score is selected "
            "once its grid (with its edge extensions) has run; before that it is marked best so far."],
           ["task", "setting", "lr", "held-out", "dev", "", "run"], sel_rows)
    if "paired" in study.report:
        p_rows = [[t, label, *_paired_text(p)] for t, label, p in paired_differences(d, cells, tasks)]
        _write(out, "paired", f"{_common_prefix(study)} minus every other Table 1 setting, paired by seed",
               [f"Dev score x100; per-seed differences (seeds {_seeds_text(study)}), mean ± sample std, 95 % "
                "t-interval of the mean; 'exceeds noise' = the interval excludes 0. Each setting at its own selected "
                "rate (Table 1)."],
               ["task", "difference", "per seed", "mean ± std", "95 % interval", "exceeds noise"], p_rows)
    return {"cells": cells, "cell_rows": csv_cells, "tasks": tasks}


def _common_prefix(study: Study) -> str:
    """The words the paired table's settings share (DCFT k8, DCFT k2 -> DCFT)."""
    titles = [study.settings[n].title.split() for n in study.report["paired"]["settings"]]
    common = []
    for words in zip(*titles):
        if len(set(words)) > 1:
            break
        common.append(words[0])
    return " ".join(common) or " and ".join(" ".join(t) for t in titles)


# ---- ablations -------------------------------------------------------------------------------------------
def bench_times(path: Path) -> dict[tuple[int, int, str], tuple[float, ...]]:
    """(kernel, stride, impl) -> (median training-step seconds, ratio to LoRA r=1 of the same run, and that
    ratio's quartiles over the timed rounds) of the DCFT training rows of a `dcft.measure.bench` result file, for
    the harness's fast path and the authors' reference path (Delta built every step); {} when there is none."""
    if not path.exists():
        return {}
    rows = json.loads(path.read_text(encoding="utf-8")).get("rows", [])
    return {(r["kernel"], r["stride"], r["impl"]): (r["step_s_median"], r["ratio_to_lora"], r["ratio_to_lora_q1"],
                                                    r["ratio_to_lora_q3"]) for r in rows
            if r.get("method") == "dcft" and r.get("impl") in ("fast", "reference")
            and r.get("phase", "train") == "train" and r.get("via") in (None, "harness")}


def _bench_text(b: tuple[float, ...] | None) -> str:
    return f"{1000 * b[0]:.0f} ({b[1]:.2f}x LoRA, IQR {b[2]:.2f}-{b[3]:.2f})" if b else "-"


def _order(kind: str, value: Any) -> Any:
    if kind == "targets":
        return TARGET_ORDER.index(value) if value in TARGET_ORDER else len(TARGET_ORDER)
    return (value != "normal") if kind == "init" else value


@dataclass
class AblationRow:
    task: str
    kind: str  # the method key the row varies against its parent: kernel, stride, targets, init, ...
    setting: Setting
    value: Any  # that key's value (the declared method node's)
    cell: Cell
    vs_parent: dict[str, Any] | None  # paired(cell, parent's cell); None for the parent itself
    shape: tuple[int, int] | None  # (kernel, stride) of a kernel/stride row: its bench key
    parent: Setting
    lr: float | None  # the parent's selected rate


def _kind(d: Decisions, task: str, s: Setting, parent: Setting) -> str:
    """The declared method key in which `s` differs from `parent` (the first, in `set` order)."""
    mine, theirs = d.compose(task, s)[0], d.compose(task, parent)[0]
    keys = [k.split(".")[-1] for k, _ in s.set] + sorted(mine)
    return next((k for k in keys if mine.get(k) != theirs.get(k)), "setting")


def ablation_kinds(d: Decisions) -> list[tuple[str, str, list[Setting], Setting]]:
    """(task, kind, variants, parent) of `report.ablations`, kinds in the order their groups list them."""
    block = d.study.report.get("ablations", {})
    out: dict[tuple[str, str], tuple[list[Setting], Setting]] = {}
    kinds: list[str] = []
    for gname in block.get("groups", []):
        g = d.study.groups[gname]
        parent = d.study.settings[g.parent]
        for name in g.settings:
            s = d.study.settings[name]
            for task in (t for t in g.tasks if g.runs(name, t)):
                kind = _kind(d, task, s, parent)
                if kind not in kinds:
                    kinds.append(kind)
                out.setdefault((task, kind), ([], parent))[0].append(s)
    return [(t, k, *out[(t, k)]) for t in d.study.tasks for k in kinds if (t, k) in out]


def ablation_rows(d: Decisions, cells: Cells) -> list[AblationRow]:
    """Every ablation row with its cell at its parent's selected rate (`extra_rows`: at their own, from
    Table 1), ordered by the varied value (numbers ascending, targets as Table 6, the default init first)."""
    extra = d.study.report.get("ablations", {}).get("extra_rows", {})
    rows = []
    for task, kind, variants, parent in ablation_kinds(d):
        if (task, parent.name) not in cells:
            continue
        sel, base = cells[(task, parent.name)]
        ref = [d.study.settings[n] for n in extra.get(kind, [])] + [parent]
        value = {s.name: d.compose(task, s)[0].get(kind) for s in [*variants, *ref]}
        for s in sorted([*variants, *ref], key=lambda s: _order(kind, value[s.name])):
            own = cells.get((task, s.name)) if s in table_settings(d.study) else None
            c = own[1] if own else d.cell(task, s, sel.lr)
            m = d.compose(task, s)[0]
            shape = (m.get("kernel"), m.get("stride")) if kind in ("kernel", "stride") else None
            rows.append(AblationRow(task, kind, s, value[s.name], c, paired(c, base) if s is not parent else None,
                                    shape, parent, sel.lr))
    return rows


def write_ablations(d: Decisions, out: Path, ablations: list[AblationRow], bench: dict, bench_file: str) -> None:
    if not ablations:
        return
    study, parent = d.study, ablations[0].parent
    extra = study.report["ablations"].get("extra_rows", {})
    extra_text = "; ".join(f"{', '.join(study.settings[n].title for n in names)} in the {kind} rows"
                           for kind, names in extra.items())
    rows = []
    for a in ablations:
        rows.append([a.task, a.kind, a.setting.title, _params_text(cell_params(d.runs, a.cell.runs)),
                     _fmt(a.cell, len(study.seeds)),
                     *(_paired_text(a.vs_parent)[1:4] if a.vs_parent else ["-", "-", "-"]),
                     *(_bench_text(bench.get((*a.shape, impl)) if a.shape else None) for impl in ("fast", "reference"))])
    kinds = []
    for a in ablations:
        if a.kind not in kinds:
            kinds.append(a.kind)
    model = study.report.get("model_title", dict(study.run).get("model", ""))
    _write(out, "ablations", f"Ablations at {parent.title}'s selected rate (Tables 4-6, initialisation)"
           if kinds == ["kernel", "stride", "targets", "init"] else f"Ablations at {parent.title}'s selected rate "
           f"({', '.join(kinds)})",
           [f"Dev score x100, mean ± std over seeds {_seeds_text(study)} at {parent.title}'s selected rate"
            + (f" ({extra_text}: at its own selected rate, from Table 1)" if extra_text else "")
            + f"; difference to {parent.title} paired by seed with its 95 % interval.",
            f"Bench step ms: median training step (forward, backward, AdamW) of {model} "
            f"with random weights, from `{bench_file}` (`python -m dcft.measure.bench --model {dict(study.run).get('model')} "
            "--shapes ...` on an "
            "idle machine), its ratio to LoRA r=1 in the same run and that ratio's interquartile range over the "
            "timed rounds: this harness's path (`impl=fast`, x M then G) and the authors' (`impl=reference`, "
            "Delta built by conv_transpose2d every step, the path behind the paper's time column); - = not "
            "benchmarked."],
           ["task", "ablation", "setting", "#Params", "dev", f"- {parent.title}", "95 % interval", "exceeds noise",
            "bench step ms", "bench step ms, authors' path"], rows)


def _rate_state(sel: Selection) -> str:
    """A tuned setting's rate as its grid stands: the selected rate, or the grid's progress."""
    if sel.state == "selected":
        return fmt_lr(sel.lr)
    return f"grid running (best so far {fmt_lr(sel.lr)})" if sel.lr else "grid not run yet"


def _side(p: dict[str, Any] | None) -> str:
    """Where a paired difference puts a variant against its parent: above / below (the 95 % interval
    excludes 0), level (it holds 0), or `-` while a cell has fewer than two seeds in common."""
    if p is None or p["exceeds"] is None:
        return "-"
    return ("above" if p["mean"] > 0 else "below") if p["exceeds"] else "level"


def skipped_note(study: Study, groups: list[str], among: list[str] | None = None) -> list[str]:
    """A note naming what the groups' `skip` leaves out (of the settings `among`, default all), task by
    task; none when nothing is."""
    parts = [f"{', '.join(study.settings[x].title for x in left)} on {task} (groups.{g}.skip)"
             for g in groups for task, names in study.groups[g].skip
             for left in [[x for x in names if among is None or x in among]] if left]
    return [f"Left out: {'; '.join(parts)}."] if parts else []


@dataclass
class Retuned:
    """One variant of a `report.retuned` group: its cell at its parent's selected rate and at its own."""

    task: str
    setting: Setting
    parent_lr: float | None
    at_parent: Cell
    selection: Selection  # its own grid's tuning state
    own: Cell  # at its own selected rate; empty until the grid is selected
    base: Cell  # the parent at the parent's rate


def retuned_cells(d: Decisions) -> list[Retuned]:
    """Every variant of `report.retuned`'s groups on each of their tasks, in file order."""
    out = []
    for gname in d.study.report.get("retuned", {}).get("groups", []):
        g = d.study.groups[gname]
        parent = d.study.settings[g.parent]
        for task in g.tasks:
            p_lr = d.rate(task, parent)
            base = d.cell(task, parent, p_lr)
            for name in g.settings_on(task):
                s = d.study.settings[name]
                own = d.cell(task, s, d.selected(task, s))
                out.append(Retuned(task, s, p_lr, d.cell(task, s, p_lr), d.selection(task, s), own, base))
    return out


def retuned_rows(d: Decisions, retuned: list[Retuned]) -> list[list[str]]:
    """Each variant against its parent at both rates, and whether the side of seed noise it falls on
    moves with the rate."""
    n, out = len(d.study.seeds), []
    for r in retuned:
        a, b = paired(r.at_parent, r.base), paired(r.own, r.base)
        moved = "-" if "-" in (_side(a), _side(b)) else ("yes" if _side(a) != _side(b) else "no")
        out.append([r.task, r.setting.title, _params_text(cell_params(d.runs, (r.own if r.own.n else r.at_parent).runs)),
                    fmt_lr(r.parent_lr), _fmt(r.at_parent, n), *_paired_text(a)[1:3], _side(a),
                    _rate_state(r.selection), _fmt(r.own, n), *_paired_text(b)[1:3], _side(b), moved])
    return out


def write_retuned(d: Decisions, out: Path, retuned: list[Retuned]) -> None:
    rows = retuned_rows(d, retuned)
    if not rows:
        return
    block = d.study.report["retuned"]
    parents = sorted({d.study.settings[d.study.groups[g].parent].title for g in block["groups"]})
    _write(out, "retuned", "Ablation variants at their parent's rate and at their own",
           [f"Dev score x100, mean ± std over seeds {_seeds_text(d.study)}. A variant's cell at {', '.join(parents)}'s "
            "selected rate (how the ablation tables, and the paper's Tables 4-6, ran it), then at the rate its own "
            "grid selected on the held-out slice (the study file's "
            + ", ".join(f"`groups.{g}`" for g in block["groups"]) + ": centred on the parent's rate, the same "
            "tuning rule as every setting).",
            "Each minus the parent at the parent's rate, paired by seed, with its 95 % interval; side: above or "
            "below when the interval excludes 0, level when it holds 0. Moved: whether that side differs between "
            "the two rates, i.e. whether the ablation's verdict depends on running every variant at the parent's rate.",
            *skipped_note(d.study, block["groups"])],
           ["task", "setting", "#Params", "parent's rate", "dev at parent's rate", "- parent", "95 % interval",
            "side", "own rate", "dev at own rate", "- parent", "95 % interval", "side", "moved"], rows)


# ---- budget checks ---------------------------------------------------------------------------------------
def all_checks(d: Decisions, task: str):
    """The task's gate checks with runs at factor x steps, then its `also` checks that have them."""
    gates = d.checks(task)
    seen = {(c.setting.name, c.steps, c.lr) for c in gates}
    also = [c for c in d.also_checks(task) if (c.setting.name, c.steps, c.lr) not in seen
            and d.runs_of(task, c.setting, c.doubled_steps)]
    return gates + also


def unchecked_also(d: Decisions, task: str) -> list[tuple[Setting, float]]:
    """The `budget_check.also` settings (with their selected rates) that `budget_check.also_tasks` leaves
    unchecked on `task`: tuned there, not its last budget's gate."""
    study = d.study
    if study.budget_check.also_on(task):
        return []
    gate = d.gate(task, study.tasks[task].steps)
    out = []
    for name in study.budget_check.also:
        lr = d.rate(task, name) if study.tuned_on(name, task) else None
        if lr is not None and (gate is None or gate.setting.name != name):
            out.append((study.settings[name], lr))
    return out


def end_slope(points: list[tuple], n: int) -> float | None:
    """The end-of-curve slope: the mean of the last `n` evaluations minus the mean of the `n` before
    (`budget_check.slope_evals`); None with fewer than 2n evaluations. `points` are (step, mean, ...)."""
    if n < 1 or len(points) < 2 * n:
        return None
    values = [p[1] for p in points]
    return statistics.fmean(values[-n:]) - statistics.fmean(values[-2 * n:-n])


def convergence_verdict(check, margin: float | None) -> tuple[str, str, str]:
    """(gate, equivalence, verdict) of a budget check. The gate is the study's rule, the one the planner
    waits for (`budget_check.rule`: the 95 % interval of factor x - 1x holds 0). The verdict says
    *converged* only where the interval shows it: the two one-sided tests put factor x - 1x inside the
    task's margin (`dcft.report.claims.as_good_as`); *not converged* where the gate fails (the longer budget
    gains beyond seed noise); otherwise *inconclusive* (the gate passed on seed spread alone)."""
    if check.verdict == "running":
        return "running", "-", "running"
    gate = "passed" if check.verdict == "converged" else "failed"
    if margin is None:
        equivalent = "-"
    else:
        equivalent = C.as_good_as(C.paired(check.doubled.values, check.base.values), margin)
    if gate == "failed":
        return gate, equivalent, "not converged"
    return gate, equivalent, "converged" if equivalent == C.SUPPORTED else "inconclusive"


def write_convergence(d: Decisions, out: Path) -> None:
    """Every budget check with runs: the setting at the budget and at factor x its steps, paired by seed;
    the gate, the equivalence test against the task's margin, and each curve's end-of-curve slope."""
    study = d.study
    f = study.budget_check.factor
    n = study.budget_check.slope_evals
    rows = []
    for task in study.tasks:
        margin = study.margins.get(task)
        for check in all_checks(d, task):
            slopes = [end_slope(mean_curve(d, task, check.setting, check.lr, steps), n)
                      for steps in (check.steps, check.doubled_steps)]
            rows.append([task, check.setting.title, fmt_lr(check.lr), check.steps, _fmt(check.base, len(study.seeds)),
                         check.doubled_steps, _fmt(check.doubled, len(study.seeds)),
                         *_paired_text(check.difference)[1:3],
                         *("-" if x is None else f"{x:+.2f}" for x in slopes),
                         "-" if margin is None else f"±{margin:g}", *convergence_verdict(check, margin)])
        steps = study.tasks[task].steps
        for s, lr in unchecked_also(d, task):
            slope = end_slope(mean_curve(d, task, s, lr, steps), n)
            rows.append([task, s.title, fmt_lr(lr), steps, _fmt(d.cell(task, s, lr, steps), len(study.seeds)),
                         *["-"] * 4, "-" if slope is None else f"{slope:+.2f}", "-",
                         "-" if margin is None else f"±{margin:g}", "-", "-", "not checked"])
    _write(out, "convergence", f"Has the budget converged? The best core setting at {_times(f)} the steps",
           [f"Dev score x100, mean ± std over seeds {_seeds_text(study)} at the rate the setting selected at that "
            f"budget; {f}x minus 1x paired by seed with its 95 % interval.",
            f"Gate (budget_check.rule, what the plan waits for): passed when the 95 % interval holds 0. A budget "
            f"that failed it was {'doubled' if f == 2 else 'lengthened'} (tasks.<task>.budgets in "
            f"{study.path_rel}) and its core grids run again there, around the rates it had selected.",
            f"Verdict: converged only when two one-sided tests put {f}x - 1x inside the task's margin (margins:, "
            f"the 90 % interval inside ±margin; the equivalence column); not converged when the gate failed; "
            f"otherwise inconclusive: the interval holds 0 because the seeds disagree, not because the curve is flat."
            + (" The margins were fixed on the second edition's date, after the first edition's checks ran."
               if any(c.edition == 2 for c in study.claims) else ""),
            f"Slope: the end of each curve (mean over the seeds), the last {n} evaluations' mean minus the {n} "
            f"before (budget_check.slope_evals); a rising end says the budget is short whatever the gate says.",
            *([f"Also checked, without gating the plan: "
               f"{', '.join(study.settings[x].title for x in study.budget_check.also)} (budget_check.also), listed "
               "once their runs exist"
               + (f", on {', '.join(study.budget_check.also_tasks)} (budget_check.also_tasks); on the other tasks "
                  f"they are listed not checked, with the end-of-curve slope at the budget." if study.budget_check.also_tasks
                  else ".")] if study.budget_check.also else [])],
           ["task", "setting", "lr", "steps", "dev", f"{f}x steps", f"dev at {f}x", f"{f}x - 1x", "95 % interval",
            "slope 1x", f"slope {f}x", "margin", "gate", "equivalence", "verdict"], rows)


# ---- learning speed ---------------------------------------------------------------------------------------
def curve(run: dict[str, Any], metric: str) -> list[tuple[int, float]]:
    rec = json.loads((Path(run["path"]) / "result.json").read_text(encoding="utf-8"))
    key = f"validation/{metric}"
    return [(h["step"], 100 * h[key]) for h in (rec.get("metrics") or {}).get("history", []) if key in h]


def mean_curve(d: Decisions, task: str, setting: Setting, lr: float | None, steps: int | None = None):
    if lr is None:
        return []
    per = [curve(r, d.study.tasks[task].metric) for r in d.runs_of(task, setting, steps)
           if math.isclose(float(r["lr"]), lr, rel_tol=1e-9) and r["seed"] in d.study.seeds]
    steps_ = sorted({s for c in per for s, _ in c})
    out = []
    for st in steps_:
        vals = [v for c in per for s, v in c if s == st]
        if len(vals) == len(per):
            out.append((st, statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)))
    return out


def step_cells(d: Decisions, task: str, setting: Setting, lr: float | None) -> dict[int, Cell]:
    """Dev score x100 per evaluated step, one value per seed at `lr`: the curves as cells."""
    out: dict[int, Cell] = {}
    for r in d.runs_of(task, setting) if lr is not None else ():
        if math.isclose(float(r["lr"]), lr, rel_tol=1e-9) and r["seed"] in d.study.seeds:
            for step, v in curve(r, d.study.tasks[task].metric):
                c = out.setdefault(step, Cell({}, []))
                c.values[r["seed"]] = v
                c.runs.append(r["run"])
    return out


def early_mean(by_step: dict[int, Cell]) -> Cell:
    """Per seed, the mean dev score over the evaluations in the first half of the run (steps <= half the
    last evaluated step): the area under the early learning curve, one number per seed. Only seeds
    evaluated at every one of those steps count."""
    steps = [st for st in sorted(by_step) if st <= max(by_step) / 2] if by_step else []
    seeds = set.intersection(*(set(by_step[st].values) for st in steps)) if steps else set()
    return Cell({sd: statistics.fmean(by_step[st].values[sd] for st in steps) for sd in sorted(seeds)},
                sorted({r for st in steps for r in by_step[st].runs}))


def speed_settings(d: Decisions) -> tuple[list[Setting], Setting | None]:
    block = d.study.report.get("learning_speed", {})
    if not block:
        return [], None
    base = d.study.settings[block["against"]]
    return [d.study.settings[n] for n in block["settings"]] + [base], base


def cell_rate(d: Decisions, cells: Cells, task: str, s: Setting) -> float | None:
    """The rate a setting's cell is reported at: Table 1's selection, else its group's rule."""
    if (task, s.name) in cells:
        return cells[(task, s.name)][0].lr
    return d.rate(task, s) if d.study.groups_of(s.name, task) else None


def write_learning_speed(d: Decisions, out: Path, cells: Cells) -> None:
    """Dev score at the first evaluations of `report.learning_speed`'s settings at their rates; each minus
    the baseline at the first evaluation and over the first half of the run (`early_mean`), paired by seed."""
    settings, base_s = speed_settings(d)
    if base_s is None:
        return
    n = len(d.study.seeds)
    rows = []
    for task in d.study.tasks:
        if (task, base_s.name) not in cells:
            continue
        base = step_cells(d, task, base_s, cells[(task, base_s.name)][0].lr)
        base_half = early_mean(base)
        for s in settings:
            lr = cell_rate(d, cells, task, s)
            by_step = step_cells(d, task, s, lr)
            if not by_step:
                continue
            first = min(by_step)
            diff = paired(by_step[first], base[first]) if s is not base_s and first in base else None
            half = early_mean(by_step)
            half_diff = paired(half, base_half) if s is not base_s else None
            early = [_fmt(by_step[st], n) for st in sorted(by_step)[:3]]
            rows.append([task, s.title, fmt_lr(lr), *early, *["-"] * (3 - len(early)), _fmt(by_step[max(by_step)], n),
                         first, *_paired_text(diff)[1:4], _fmt(half, n), *_paired_text(half_diff)[1:4]])
    at_other = [f"{s.title} at {d.study.settings[g.rate.setting].title}'s" for s in settings
                for g in d.study.groups.values() if s.name in g.settings and g.rate.rule == "of"][:1]
    short = base_s.title.split()[0]
    _write(out, "learning_speed", "Learning speed: dev score at the first evaluations (Figure 3's question)",
           [f"Dev score x100, mean ± std over seeds {_seeds_text(d.study)} at each setting's selected rate"
            + (f" ({at_other[0]})" if at_other else "") + f", at the first three evaluations and the last; '- {short}' "
            f"is the row minus {base_s.title} at the first evaluation, paired by seed, with its 95 % interval.",
            f"First half: per seed, the mean dev score over the evaluations in the first half of the run (the "
            f"area under the early curve); '- {short}' the same for {base_s.title} subtracted seed by seed, with its "
            "95 % interval. The curves: figures/learning_curves.png."],
           ["task", "setting", "lr", "1st eval", "2nd eval", "3rd eval", "last eval", "1st eval step",
            f"- {short} at 1st eval", "95 % interval", "exceeds noise", "first half", f"- {short}, first half",
            "95 % interval, first half", "exceeds noise, first half"], rows)


# ---- figures -------------------------------------------------------------------------------------------------
def pareto_points(d: Decisions, task: str, cells: Cells, settings: list[Setting] | None = None):
    """The Pareto figure's points on one task: (#Params mean, smallest, largest, dev mean, std (0 below two
    seeds), setting) of each setting with a cell, its #Params from the cell's own runs."""
    pts = []
    for s in settings if settings is not None else in_order(d.study, d.study.report.get("pareto", {}).get("groups", [])):
        _, c = cells.get((task, s.name), (None, Cell({}, [])))
        p = cell_params(d.runs, c.runs)
        if c.n and p:
            pts.append((p[0], p[1], p[2], c.mean, 0 if c.n < 2 else c.std, s.title))
    return pts


def _pareto_panel(ax, d: Decisions, task: str, cells: Cells) -> None:
    """Score against #Params (log) of the settings on one task; dashed: the Pareto front. A setting whose
    count varies by run (SoRA, AdaLoRA) sits at its mean, a horizontal bar spanning its range."""
    pts = pareto_points(d, task, cells)
    for n, low, high, m, sd, title in pts:
        ax.errorbar(n, m, yerr=sd, xerr=[[n - low], [high - n]] if low != high else None, fmt="o", ms=4, capsize=2)
        ax.annotate(title, (n, m), fontsize=6, xytext=(4, 0), textcoords="offset points", va="center",
                    arrowprops={"arrowstyle": "-", "lw": 0.3, "color": "gray", "shrinkA": 0, "shrinkB": 2})
    front, best = [], -math.inf
    for n, *_, m, _, _ in sorted(pts):
        if m > best:
            front.append((n, m))
            best = m
    if len(front) > 1:
        ax.plot(*zip(*front), "k--", lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("#Params (adapter, log)")


def _curves_panel(ax, d: Decisions, task: str, cells: Cells) -> None:
    """Dev score against step of `report.learning_speed`'s settings and its baseline."""
    drawn = False
    for s in speed_settings(d)[0]:
        lr = cell_rate(d, cells, task, s)
        pts = mean_curve(d, task, s, lr)
        if pts:
            x, m, sd, _ = zip(*pts)
            ax.plot(x, m, marker="o", ms=3, label=f"{s.title} (lr {fmt_lr(lr)})")
            ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], alpha=0.15)
            drawn = True
    ax.set_xlabel("optimizer step")
    if drawn:
        ax.legend(fontsize=6)


def _convergence_panel(ax, d: Decisions, task: str, cells: Cells) -> None:
    """Dev score against step of each budget check's setting at its budget and at factor x its steps."""
    drawn = set()
    for check in all_checks(d, task):
        for steps in (check.steps, check.doubled_steps):
            key = (check.setting.name, steps, check.lr)
            pts = mean_curve(d, task, check.setting, check.lr, steps) if key not in drawn else []
            drawn.add(key)
            if pts:
                x, m, sd, _ = zip(*pts)
                ax.errorbar(x, m, yerr=sd, marker="o", ms=3, capsize=2,
                            label=f"{check.setting.title}, {steps} steps (lr {fmt_lr(check.lr)})")
    ax.set_xlabel("optimizer step")
    if drawn:
        ax.legend(fontsize=6)


def write_figures(d: Decisions, out: Path, cells: Cells) -> list[Path]:
    """`pareto`, `learning_curves` and `convergence`, one panel per task, PNG and PDF (dcft.report.figures' conventions)."""
    from dcft.report.figures import _save, plt, spread_labels

    study = d.study
    tasks = _tasks(study, cells)
    f = study.budget_check.factor
    written: list[Path] = []
    for stem, panel, title in (
            ("pareto", _pareto_panel, "score against trainable parameters (mean ± std over seeds; "
                                      "SoRA, AdaLoRA: mean pruned count, bar = range; dashed: Pareto front)"),
            ("learning_curves", _curves_panel, "dev score against optimizer step, mean ± std over seeds at "
                                               "each setting's selected rate"),
            ("convergence", _convergence_panel, f"each budget check: the best core setting at the budget and "
                                                f"at {_times(f)} its steps (its rate, seeds {_seeds_text(study)})")):
        if not tasks:
            break
        if stem == "learning_curves" and not speed_settings(d)[0]:  # no report.learning_speed block
            continue
        width = 4.2 if stem == "pareto" else 3.2  # inches per task panel; the Pareto panel carries ten labels
        fig, axes = plt.subplots(1, len(tasks), figsize=(width * len(tasks), 2.8), squeeze=False)
        for ax, t in zip(axes[0], tasks):
            panel(ax, d, t, cells)
            ax.set_ylabel(f"dev {study.tasks[t].metric} x100")
            ax.set_title(TASK_LABEL.get(t, t))
        fig.suptitle(f"{_label(study)}: {title}", fontsize=8)
        fig.tight_layout()
        for ax in axes[0]:
            spread_labels(ax)  # after the layout: labels of nearby points (SST-2's adapters) stop overlapping
        written += _save(fig, out, stem)
    return written


def _panel_rows(rows: list[AblationRow], task: str, kind: str) -> list[AblationRow]:
    """One ablation panel's rows with runs, in table order."""
    return [a for a in rows if a.task == task and a.kind == kind and a.cell.n]


def ablation_series(rows: list[AblationRow], task: str, kind: str) -> list[tuple[str, float, float, int]]:
    """One ablation panel's points in table order: (varied value, dev mean, std (0 below 2 seeds), seeds)."""
    return [(str(a.value), a.cell.mean, a.cell.std if a.cell.n > 1 else 0.0, a.cell.n)
            for a in _panel_rows(rows, task, kind)]


def _ablation_panel(ax, d: Decisions, rows: list[AblationRow], task: str, kind: str, bench: dict) -> None:
    """Dev score (mean ± std over seeds) against the varied value; for kernel and stride, the bench's
    training-step time of both DCFT paths on a second axis (the paper's time column)."""
    pts = ablation_series(rows, task, kind)
    labels = [a for a, *_ in pts]
    ax.errorbar(range(len(pts)), [m for _, m, _, _ in pts], yerr=[sd for _, _, sd, _ in pts],
                fmt="o-" if kind in ("kernel", "stride") else "o", ms=4,  # a line only along an ordered axis
                capsize=2, color="C0", label="dev score")
    for i, (_, m, _, n) in enumerate(pts):
        if n < len(d.study.seeds):
            ax.annotate(f"n={n}", (i, m), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xticks(range(len(pts)), labels)
    parent = _panel_rows(rows, task, kind)[0].parent
    ax.set_xlabel({"kernel": "kernel d (stride = d)", "targets": "targets", "init": "initialisation",
                   "stride": f"stride at kernel {d.compose(task, parent)[0].get('kernel')}"}.get(kind, kind))
    ax.set_ylabel(f"dev {d.study.tasks[task].metric} x100")
    ax.set_title(f"{task}: {kind}")
    timed = [(i, impl, bench[(*a.shape, impl)][0]) for i, a in enumerate(_panel_rows(rows, task, kind)) if a.shape
             for impl in ("fast", "reference") if (*a.shape, impl) in bench]
    if timed:
        tx = ax.twinx()
        for impl, style in (("fast", "s--"), ("reference", "^:")):
            xs = [(i, 1000 * t) for i, im, t in timed if im == impl]
            if xs:
                tx.plot(*zip(*xs), style, color="0.45", ms=3, lw=0.8,
                        label="step ms, this harness" if impl == "fast" else "step ms, authors' path")
        tx.set_ylim(bottom=0)  # from 0: the two paths' ratio reads off the plot
        tx.set_ylabel("bench training step (ms)", fontsize=7)
        tx.spines["right"].set_visible(True)
        tx.legend(fontsize=6, loc="lower right")


def write_ablation_figure(d: Decisions, rows: list[AblationRow], out: Path, bench: dict) -> list[Path]:
    """`ablations`: one panel per (task, kind) with runs."""
    from dcft.report.figures import _save, plt

    kinds = []
    for a in rows:
        if a.kind not in kinds:
            kinds.append(a.kind)
    panels = [(t, k) for t in d.study.tasks for k in kinds if ablation_series(rows, t, k)]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.8), squeeze=False)
    for ax, (t, k) in zip(axes[0], panels):
        _ablation_panel(ax, d, rows, t, k, bench)
    fig.suptitle(f"{_label(d.study)}: ablations at {rows[0].parent.title}'s selected rate (mean ± std over seeds "
                 f"{_seeds_text(d.study)}; grey: training-step time on an idle machine)", fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "ablations")


def frontier_curves(study: Study) -> list[tuple[str, list[str]]]:
    """`report.frontier`'s curves: (curve name, its settings), every key of the block but `groups`."""
    return [(k, list(v)) for k, v in (study.report.get("frontier") or {}).items() if k != "groups"]


def frontier_cells(d: Decisions) -> list[tuple[str, str, Setting, Selection, Cell]]:
    """(task, curve, setting, its selection, its cell at its own selected rate) of every setting of
    `report.frontier`'s curves on each task that tunes it; the cell is empty until its grid is selected."""
    out = []
    for task in d.study.tasks:
        for curve, names in frontier_curves(d.study):
            for name in names:
                s = d.study.settings[name]
                if d.study.tuned_on(name, task):
                    out.append((task, curve, s, d.selection(task, s), d.cell(task, s, d.selected(task, s))))
    return out


def frontier_points(d: Decisions, frontier: list, task: str, names: list[str]) -> list[tuple[float, float, float, int, str]]:
    """(#Params mean, dev mean, std (0 below 2 seeds), seeds, title) of each named setting with a cell on
    `task` at its own selected rate (`frontier`: `frontier_cells`), by #Params."""
    pts = []
    for t, _, s, _, c in frontier:
        p = cell_params(d.runs, c.runs)
        if t == task and s.name in names and c.n and p:
            pts.append((p[0], c.mean, c.std if c.n > 1 else 0.0, c.n, s.title))
    return sorted(pts)


def write_frontier_table(d: Decisions, out: Path, frontier: list) -> None:
    """`frontier`: the figure's points as a table, every setting of its curves with its grid's state."""
    rows = []
    for task, curve, s, sel, c in frontier:
        params = cell_params(d.runs, c.runs) or cell_params(d.runs, [r["run"] for r in d.runs_of(task, s)])
        rows.append([task, curve, s.title, _params_text(params), _rate_state(sel),
                     _fmt(c, len(d.study.seeds))])
    if rows:
        _write(out, "frontier", "The parameter frontier: score against #Params, each setting at its own rate",
               [f"Dev score x100, mean ± std over seeds {_seeds_text(d.study)} at the rate the setting's own grid selected "
                "on the held-out slice; #Params: the adapter's trainable parameters of those runs (before they ran: of "
                "its tuning runs; classifier head aside). figures/frontier.png plots them; the claims at matched parameter counts are in claims.md.",
                *skipped_note(d.study, d.study.report["frontier"].get("groups", []),
                              [n for _, names in frontier_curves(d.study) for n in names])],
               ["task", "curve", "setting", "#Params", "rate", "dev"], rows)


def write_frontier(d: Decisions, out: Path, frontier: list) -> list[Path]:
    """`frontier`: score against #Params (log), the LoRA and the DCFT curve of `report.frontier`, each
    setting at its own selected rate, error bars = std over seeds; written once a task has a cell."""
    block = d.study.report.get("frontier")
    if not block:
        return []
    curves = frontier_curves(d.study)
    tasks = [t for t in d.study.tasks if any(frontier_points(d, frontier, t, names) for _, names in curves)]
    if not tasks:
        return []
    from matplotlib.ticker import NullFormatter

    from dcft.report.figures import _save, plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.8 * len(tasks), 3.2), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for i, (_, names) in enumerate(curves):
            pts = frontier_points(d, frontier, t, names)
            if not pts:
                continue
            method = d.study.settings[names[0]].title.split()[0]  # the curve's name: LoRA, DCFT
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt="o-", ms=3,
                        capsize=2, color=f"C{i}", label=method)
            for n, m, _, k, title in pts:  # the point's own part of its title, one curve above, the next below
                ax.annotate(title.removeprefix(method).strip() + ("" if k == len(d.study.seeds) else f" (n={k})"),
                            (n, m), fontsize=6, color=f"C{i}", xytext=(3, 4 if i % 2 == 0 else -10),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # the decades only: minor labels overlap on a short axis
        ax.set_xlabel("#Params (adapter, log)")
        ax.set_ylabel(f"dev {d.study.tasks[t].metric} x100")
        ax.set_title(TASK_LABEL.get(t, t))
        ax.legend(fontsize=6)
    fig.suptitle(f"{_label(d.study)}: the parameter frontier, each setting at its own selected rate "
                 f"(mean ± std over seeds {_seeds_text(d.study)})", fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "frontier")


# ---- compute -------------------------------------------------------------------------------------------------
def _record(run: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(run["path"]) / "result.json").read_text(encoding="utf-8"))


def write_compute(d: Decisions, out: Path) -> float:
    """Wall time of every run (loading, training, evaluations), per task, method and CPU (`environment.cpu`
    of each result file); returns machine-hours: run time / the runs side by side (`report.compute`)."""
    block = d.study.report.get("compute", {})
    side = int(block.get("side_by_side", 1))
    starts = sorted((str(day), int(n)) for n, day in dict(block.get("editions") or {}).items())
    per: dict[tuple[str, str, str], list[float]] = {}
    by_edition: dict[int, list[float]] = {}
    for r in d.runs:
        rec = _record(r)
        cpu = (rec.get("environment") or {}).get("cpu") or "unknown"
        wall = float(rec.get("wall_time_s") or 0.0)
        per.setdefault((r["task"], r["method"], cpu), []).append(wall)
        started = str(rec.get("started_at") or "")
        by_edition.setdefault(max([n for day, n in starts if started >= day], default=1), []).append(wall)
    rows = [[t, m, cpu, len(v), f"{sum(v) / 3600:.2f}", f"{statistics.median(v) / 60:.1f}"]
            for (t, m, cpu), v in sorted(per.items())]
    for cpu in sorted({k[2] for k in per}):
        v = [x for k, xs in per.items() if k[2] == cpu for x in xs]
        rows.append(["all", "", cpu, len(v), f"{sum(v) / 3600:.2f}", ""])
    total = sum(sum(v) for v in per.values()) / 3600
    rows.append(["all", "", "all", sum(len(v) for v in per.values()), f"{total:.2f}", ""])
    first = dict((n, day) for day, n in starts)
    editions = [f"edition {n} ({f'runs started from {first[n]}' if n in first else 'the earlier runs'}): {len(v)} runs, "
                f"{sum(v) / 3600 / side:.2f} hours of the machine" for n, v in sorted(by_edition.items())]
    _write(out, "compute", "Compute spent",
           [f"Run wall time (model load, training, evaluations), one torch thread per run, {WORDS.get(side, side)} runs "
            f"side by side on the {side}-core machine: {total:.2f} run-hours = {total / side:.2f} hours of the machine"
            + (f"; by edition (report.compute.editions): {'; '.join(editions)}." if starts else "."),
            "cpu: the result file's `environment.cpu`; the sessions ran on different 2-core machines, so run "
            "times compare only within one cpu (training-time comparisons: the bench, on one idle machine)."],
           ["task", "method", "cpu", "runs", "run-hours", "median min/run"], rows)
    return total / side


# ---- tie rule --------------------------------------------------------------------------------------------------
def verdicts(d: Decisions) -> dict[tuple[str, str, str], dict[str, Any] | None]:
    """Every difference the report judges against seed noise, keyed (task, table, comparison): the paired
    table, each ablation minus its parent and each budget check (factor x minus 1x). The learning-speed
    table reads whole curves, not best steps."""
    cells = table1_cells(d)
    tasks = _tasks(d.study, cells)
    out = {(t, "paired", label): p for t, label, p in paired_differences(d, cells, tasks)}
    for a in ablation_rows(d, cells):
        if a.setting is not a.parent:
            out[(a.task, f"ablations: {a.kind}", f"{a.setting.title} - {a.parent.title}")] = a.vs_parent
    for t in d.study.tasks:
        for check in all_checks(d, t):
            out[(t, "convergence", f"{check.setting.title}, {check.doubled_steps} - {check.steps} steps")] = \
                check.difference
    return out


def _verdict_text(p: dict[str, Any] | None) -> str:
    if p is None or p["exceeds"] is None:
        return "-"
    return f"{p['mean']:+.2f} [{p['lo']:+.2f}, {p['hi']:+.2f}] " + ("exceeds noise" if p["exceeds"] else "within noise")


def under_other_tie_rule(d: Decisions) -> tuple[str, Decisions]:
    """The study's decisions with every run's best step taken by the other tie rule (`BEST_STEP_RULE`'s
    opposite: the latest of tied steps instead of the earliest), and that rule's name."""
    other = "latest" if BEST_STEP_RULE == "earliest" else "earliest"
    return other, Decisions(d.study, [at_best_step(r, other) for r in d.runs], d.compose)


def write_tie_rule(d: Decisions, out: Path, reported: set[str]) -> list[tuple[str, str, str]]:
    """`tie_rule`: the study under the other best-step rule. Where a run's highest held-out score is reached
    at several evaluations, the report takes the earliest (`BEST_STEP_RULE`); here every run's best step is
    taken again from its history with the latest of them, and every verdict (`verdicts`) compared. The
    rates do not move (a tie changes which step is best, not the held-out score a rate is selected on).
    `reported`: the runs behind a reported cell (what `write_cells` returns). Returns the comparisons whose
    verdict changes."""
    runs = d.runs
    other, dm = under_other_tie_rule(d)
    moved = dm.runs
    before, after = verdicts(d), verdicts(dm)
    rows, changed = [], []
    for key, p in before.items():
        flips = (p or {}).get("exceeds") != (after.get(key) or {}).get("exceeds")
        if flips:
            changed.append(key)
        rows.append([*key, _verdict_text(p), _verdict_text(after.get(key)), "yes" if flips else "no"])
    tied = [r for r in runs if len(tied_steps(r.get("history") or [])) > 1]
    differ = [r for r, m in zip(runs, moved) if m["best"] != r["best"]]
    cells, cells_moved = table1_cells(d), table1_cells(dm)
    shifted = [f"{d.study.settings[name].title} on {t} {c.mean:.2f} -> {cells_moved[(t, name)][1].mean:.2f}"
               for (t, name), (_, c) in cells.items() if c.n and not math.isclose(c.mean, cells_moved[(t, name)][1].mean)]
    _write(out, "tie_rule", f"Best-step ties: the study with the {other} tied step instead of the {BEST_STEP_RULE}", [
        f"{len(tied)} of the {len(runs)} runs reach their highest held-out score at more than one evaluation, "
        f"{len(differ)} of them with different dev scores at the tied steps "
        f"({len([r for r in differ if r['run'] in reported])} behind a reported cell: cells.csv). The report takes the "
        f"{BEST_STEP_RULE} of those steps (dcft.report.selection.BEST_STEP_RULE, what the training loop records); this "
        f"table recomputes every verdict with the {other} one (dcft.report.selection.at_best_step). The selected rates are "
        "the same under both rules (a tie moves the best step, not the held-out score a rate is chosen on).",
        "Table 1 cells that move: " + ("; ".join(shifted) if shifted else "none") + ".",
        "Verdicts that change: " + ("; ".join(f"{t} {table}: {c}" for t, table, c in changed) if changed else "none")
        + ". Dev score x100, mean difference [95 % interval], paired by seed."],
           ["task", "table", "comparison", f"{BEST_STEP_RULE} tied step (reported)", f"{other} tied step",
            "verdict changes"], rows)
    return changed


# ---- cells.csv ------------------------------------------------------------------------------------------------
def write_cells(d: Decisions, out: Path, table1_rows: list[list[Any]], ablations: list[AblationRow],
                retuned: list[Retuned] = (), frontier: list = ()) -> set[str]:
    """`cells`: every reported cell (Table 1's, the budget checks', the ablations', the re-tuned variants' and
    the frontier's) with the runs behind it, so any number of the report traces to its run files. An ablation
    or frontier row that is a Table 1 setting is listed once, under Table 1. Returns the runs behind them."""
    rows = list(table1_rows)
    for task in d.study.tasks:
        for check in all_checks(d, task):
            for steps, c in ((check.steps, check.base), (check.doubled_steps, check.doubled)):
                row = _cell_row(task, f"convergence: {steps} steps", check.setting.title, check.lr, c)
                if row not in rows:  # one check's factor x cell is the next budget's check cell
                    rows.append(row)
    table = table_settings(d.study)
    for a in ablations:
        if a.cell.n and a.setting not in table:
            rows.append(_cell_row(a.task, f"ablation: {a.kind}", a.setting.title, a.lr, a.cell))
    for r in retuned:
        if r.own.n:
            rows.append(_cell_row(r.task, "retuned: own rate", r.setting.title, r.selection.lr, r.own))
    for task, curve, s, sel, c in frontier:
        if c.n and s not in table:
            rows.append(_cell_row(task, f"frontier: {curve}", s.title, sel.lr, c))
    _write(out, "cells", "Every reported cell and the runs behind it", [],
           ["task", "table", "setting", "lr", "mean", "std", "n", "runs"], rows)
    return {name for row in rows for name in row[-1].split()}


# ---- claims ------------------------------------------------------------------------------------------------------
def claim_cells(d: Decisions, claim, task: str) -> dict[str, Cell]:
    """The cells a claim compares on `task`: each setting at its own selected rate, or, where the claim's
    group runs it at another setting's rate (`{of: s}`), at that one."""
    g = d.study.groups.get(claim.group or "")
    out = {}
    for name in claim.settings:
        of = g.rate.setting if g is not None and g.rate.rule == "of" and name in g.settings else None
        out[name] = d.cell(task, name, d.rate(task, name, rule_of=of))
    return out


def claim_row(d: Decisions, claim, task: str) -> list[str]:
    """A claim on one task: the paired differences, their intervals and the verdict (`dcft.report.claims`),
    the verdict last; "not run yet" while a cell has no seed, "running (n=k of N)" while one has fewer than
    every seed."""
    n_seeds = len(d.study.seeds)
    cells = claim_cells(d, claim, task)
    margin = d.study.margins.get(task) if claim.kind == "as_good_as" else None
    chain = [C.paired(cells[a].values, cells[b].values) for a, b in zip(claim.settings, claim.settings[1:])]
    fewest = min(c.n for c in cells.values())
    if fewest == 0:
        word = NOT_RUN
    elif fewest < n_seeds:
        word = f"running (n={fewest} of {n_seeds})"
    else:
        word, chain = C.verdict(C.Claim(claim.name, claim.kind, claim.settings, margin, task),
                                {s: c.values for s, c in cells.items()})
    diffs = "; ".join(f"{p.mean:+.2f}" if p.n else "-" for p in chain)
    ci95 = "; ".join("[{:+.2f}, {:+.2f}]".format(*p.interval(0.95)) if p.n > 1 else "-" for p in chain)
    ci90 = "; ".join("[{:+.2f}, {:+.2f}]".format(*p.interval(0.90)) if p.n > 1 else "-" for p in chain) \
        if claim.kind == "as_good_as" else ""
    tost = f"{C.tost_p(chain[0], margin):.3f}" if claim.kind == "as_good_as" and chain[0].n > 1 else ""
    return [claim.name, str(claim.edition), claim.kind, task,
            " > ".join(d.study.settings[s].title for s in claim.settings) if claim.kind != "as_good_as"
            else " ~ ".join(d.study.settings[s].title for s in claim.settings),
            " / ".join(str(cells[s].n) for s in claim.settings), diffs, ci95, ci90,
            f"{margin:g}" if margin is not None else "", tost, word]


def claim_rows(d: Decisions) -> list[list[str]]:
    """One `claim_row` per claim and task."""
    return [claim_row(d, claim, task) for claim in d.study.claims for task in claim.tasks]


def write_claims(d: Decisions, out: Path) -> list[list[str]]:
    """`claims`: every claim's verdict, and its verdict again under the other best-step tie rule (the
    verdicts' sensitivity to that rule; `tie_rule` has the differences)."""
    other, dm = under_other_tie_rule(d)
    rows = [[*r, o[-1]] for r, o in zip(claim_rows(d), claim_rows(dm))]
    short = [t for t in d.study.tasks if d.short(t)]
    for r in rows:
        r[3] += " (not converged)" if r[3] in short else ""
    _write(out, "claims", "Claims and their verdicts", [
        "Each claim was fixed in the study file before its runs; each setting at its own selected rate (at its "
        "group's `of` setting's rate where the claim names such a group). Dev score x100, differences a - b paired "
        "by seed (a chain: each adjacent pair).",
        "better (a > b): supported only when the 95 % t-interval of the paired mean difference lies above 0; not "
        "supported when it lies below 0; otherwise inconclusive. as_good_as: two one-sided t-tests against the "
        "task's margin (margins:), i.e. the 90 % interval inside (-margin, +margin): supported; the 95 % interval "
        "entirely beyond the margin: not supported; otherwise inconclusive. ordering: every adjacent pair better "
        "(dcft.report.claims).",
        f"A verdict needs every seed ({_seeds_text(d.study)}) in every cell: '{NOT_RUN}' while a cell has none, "
        "'running (n=k of N)' while it has fewer. A non-significant difference is never 'supported'.",
        f"Best step: the {BEST_STEP_RULE} of a run's tied best held-out evaluations (dcft.report.selection.BEST_STEP_RULE); "
        f"the last column is the verdict with the {other} one (tie_rule.md).",
        *([f"(not converged): the task's budget failed its budget check (convergence.md); the verdict holds at that "
           f"budget only."] if short else [])],
           ["claim", "edition", "kind", "task", "settings", "seeds", "mean a - b", "95 % interval", "90 % interval",
            "margin", "TOST p", "verdict", f"verdict, {other} tied step"], rows)
    return rows


# ---- summary -----------------------------------------------------------------------------------------------------
def _cell_text(d: Decisions, c: Cell) -> str:
    """A cell with its adapter size: `84.52 ± 0.41 (7,488)`."""
    if not c.n:
        return "-"
    return f"{_fmt(c, len(d.study.seeds))} ({_params_text(cell_params(d.runs, c.runs))})"


def summary_claim(d: Decisions):
    """The claim `report.summary` names (None without the block)."""
    name = (d.study.report.get("summary") or {}).get("claim")
    return next((c for c in d.study.claims if c.name == name), None)


def summary_rows(d: Decisions) -> list[list[str]]:
    """`report.summary`: per task of its claim, the claim's two cells, their paired difference and verdict,
    the `with` settings' cells, and the verdict of each budget check at the task's last budget."""
    claim = summary_claim(d)
    if claim is None:
        return []
    block = d.study.report["summary"]
    rows = []
    for task in claim.tasks:
        cells = claim_cells(d, claim, task)
        a, b = claim.settings
        p = paired(cells[a], cells[b])
        diff = "-" if p is None else (f"{p['mean']:+.2f} (n=1)" if p["exceeds"] is None
                                      else f"{p['mean']:+.2f} [{p['lo']:+.2f}, {p['hi']:+.2f}]")
        margin = d.study.margins.get(task) if claim.kind == "as_good_as" else None
        steps = d.study.tasks[task].steps
        checks = [c for c in all_checks(d, task) if c.steps == steps]
        budget = "; ".join(f"{c.setting.title}: {convergence_verdict(c, d.study.margins.get(task))[2]}"
                           for c in checks) or "not checked yet"
        with_ = [_cell_text(d, d.cell(task, n, d.rate(task, n))) if d.study.groups_of(n, task) else "not run"
                 for n in block.get("with", [])]
        rows.append([task, d.study.tasks[task].metric, f"{steps} steps", _cell_text(d, cells[a]),
                     _cell_text(d, cells[b]), diff, claim_row(d, claim, task)[-1] + (f" (±{margin:g})" if margin else ""),
                     *with_, budget])
    return rows


def write_summary(d: Decisions, out: Path) -> None:
    rows = summary_rows(d)
    if not rows:
        return
    block, claim = d.study.report["summary"], summary_claim(d)
    a, b = (d.study.settings[n].title for n in claim.settings)
    _write(out, "summary", f"{a} against {b}, task by task",
           [f"Dev score x100, mean ± std over seeds {_seeds_text(d.study)}, each setting at its own selected rate, "
            "with its adapter's trainable parameters; the difference paired by seed with its 95 % interval; the "
            f"verdict of the claim {claim.name} ({claim.kind}, claims.md) with the task's margin.",
            "Budget check: the verdict of every check at the task's budget (convergence.md): converged only "
            "inside the margin; not converged when twice the steps gained beyond seed noise; else inconclusive."],
           ["task", "metric", "budget", a, b, f"{a} - {b}, 95 % interval", "verdict (margin)",
            *(d.study.settings[n].title for n in block.get("with", [])), "budget check"], rows)


# ---- the whole report ----------------------------------------------------------------------------------------------
def report(study: Study, runs_dir: str | Path | None = None, out: str | Path | None = None) -> list[Path]:
    """Every table and figure of `study` from its run files; returns the figure files written."""
    if runs_dir is None:
        runs = load_runs(study)
    else:
        from dcft.report.tables import load_runs as load

        runs = load(runs_dir).usable
    out = Path(out) if out is not None else ROOT / study.report_dir
    d = Decisions(study, runs)
    res = write_tables(d, out / "tables")
    block = study.report.get("ablations", {})
    bench_file = block.get("bench", "")
    bench = bench_times(out / bench_file) if bench_file else {}
    ablations = ablation_rows(d, res["cells"])
    write_ablations(d, out / "tables", ablations, bench, bench_file)
    retuned, frontier_pts = retuned_cells(d), frontier_cells(d)
    reported = write_cells(d, out / "tables", res["cell_rows"], ablations, retuned, frontier_pts)
    write_convergence(d, out / "tables")
    write_learning_speed(d, out / "tables", res["cells"])
    write_tie_rule(d, out / "tables", reported)
    write_claims(d, out / "tables")
    write_summary(d, out / "tables")
    write_retuned(d, out / "tables", retuned)
    figs = write_figures(d, out / "figures", res["cells"])
    figs += write_ablation_figure(d, ablations, out / "figures", bench)
    write_frontier_table(d, out / "tables", frontier_pts)
    frontier = write_frontier(d, out / "figures", frontier_pts)
    figs += frontier
    machine_h = write_compute(d, out / "tables")
    side = int(study.report.get("compute", {}).get("side_by_side", 1))
    print(f"{len(runs)} runs ({machine_h:.2f} h of the {side}-core machine); wrote {out}/tables/"
          f"{{summary,table1,paired,ablations,retuned,frontier,convergence,learning_speed,tie_rule,claims,selection,cells,compute}}.{{md,csv}}"
          + (f" and {len(figs)} figure files" if figs else "")
          + ("" if frontier else " (no frontier figure: report.frontier has no cell yet)"))
    return figs
