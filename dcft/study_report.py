"""The CPU study's tables and figures (`python -m dcft.study report`, `make cpu-report`), from its
run files only (never trains). Every cell is traceable: the runs behind it are listed in
`tables/cells.csv` (Table 1's cells, the budget checks' and the ablations'), and every tuning run with
its held-out and dev scores in `tables/selection.csv`.

Tables (`<out>/tables/*.md` and `.csv`):

* `table1`: each Table 1 setting per task: dev score at each run's best held-out step, mean +- sample
  std over seeds 6, 7, 8 at the rate selected on the held-out slice (`dcft.study.select`, the tables'
  protocol `dcft.selection`), the rate, and the adapter's trainable parameters of those runs (#Params,
  classifier head aside, as the paper counts; SoRA and AdaLoRA: the mean live count, with its range).
* `paired`: DCFT (k8, k2) minus LoRA, then minus every other Table 1 setting, per seed (the same seed
  holds out the same rows and draws the same batches), mean, sample std and the 95 % t-interval of the
  mean difference; a difference *exceeds seed noise* when that interval excludes 0.
* `ablations`: kernel (Table 4), stride (Table 5), targets (Table 6) and initialisation, all at DCFT
  k8's selected rate; each row against DCFT k8 paired by seed.
* `convergence`: the budget checks, the task's best core setting at each budget and at twice its steps
  (same rate, seeds), and their verdicts.
* `learning_speed`: dev score at the first evaluations, DCFT (both initialisations) against LoRA, the
  first evaluation's difference and the first half's mean (`early_mean`) paired by seed.
* `tie_rule`: every verdict above again with the latest of a run's tied best held-out steps instead of
  the earliest (`dcft.selection.BEST_STEP_RULE`), and which change.

Figures (`<out>/figures/*.png`): `pareto` (score against #Params per task, error bars = std; #Params of
the cell's own runs, SoRA's and AdaLoRA's pruned counts as their mean with the range),
`learning_curves` (dev score against optimizer step, mean over seeds at the selected rate),
`ablations` (score against kernel, stride, targets).

Written in-house: the tables of one study protocol (`dcft.study`); plots with matplotlib.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from dcft import study as S
from dcft.selection import BEST_STEP_RULE, at_best_step, tied_steps

BEST_STEP_NOTE = ("Best step: each run's best held-out step is the first evaluation at its highest held-out score; "
                  f"where several evaluations tie at it, the {BEST_STEP_RULE} counts (dcft.selection.BEST_STEP_RULE: "
                  "what the training loop records). The study under the other rule (the latest tied step): "
                  "tie_rule.md.")


def _fmt(c: S.Cell, digits: int = 2) -> str:
    if not c.n:
        return "-"
    if c.n == 1:
        return f"{c.mean:.{digits}f} (n=1)"
    return f"{c.mean:.{digits}f} ± {c.std:.{digits}f}" + ("" if c.n == len(S.SEEDS) else f" (n={c.n})")


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


def _write(out: Path, stem: str, title: str, notes: list[str], header: list[str], rows: list[list[str]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(f"# {title}\n\n" + _md(header, rows) + "\n" + "\n".join(f"- {n}" for n in notes)
                                    + "\n", encoding="utf-8")
    with open(out / f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# ---- the numbers -------------------------------------------------------------------------------------
def table1_cells(runs: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[S.Selection, S.Cell]]:
    out = {}
    for task in S.TASKS:
        for setting in S.TABLE1:
            if task in S.SCOPE.get(setting.name, ()):
                sel = S.select(runs, task, setting)
                out[(task, setting.name)] = (sel, S.seeds_cell(sel.choice.runs if sel.lr is not None else [], task))
    return out


def tuned(runs: list[dict[str, Any]], task: str, setting: S.Setting) -> bool:
    """Every rate of the setting's grid (stage 1 and any extension) has its seed-6 run."""
    files = [S.tune_path(task, setting), *S.SWEEP_DIR.glob(f"extend_{task}_{setting.name}_*.yaml")]
    return files[0].exists() and not any(S._pending(f, runs, task, setting) for f in files if f.exists())


def _paired_text(p: dict[str, Any] | None) -> list[str]:
    if p is None:
        return ["-"] * 4
    diffs = ", ".join(f"{x:+.2f}" for x in p["diffs"])
    if p["exceeds"] is None:  # one seed: a difference, no spread and no interval yet
        return [diffs, f"{p['mean']:+.2f} (n=1)", "-", "-"]
    return [diffs, f"{p['mean']:+.2f} ± {p['std']:.2f}", f"[{p['lo']:+.2f}, {p['hi']:+.2f}]",
            "yes" if p["exceeds"] else "no"]


def _cell_row(task: str, table: str, title: str, lr: float | None, c: S.Cell) -> list[Any]:
    """One line of `cells.csv`: a reported cell and the run folders behind it."""
    return [task, table, title, S._yaml(lr), f"{c.mean:.4f}", f"{c.std:.4f}", c.n, " ".join(c.runs)]


def write_cells(out: Path, runs: list[dict[str, Any]], table1_rows: list[list[Any]], ablations: list[AblationRow],
                cells) -> None:
    """`cells`: every reported cell (Table 1's, the budget checks' and the ablations') with the runs behind
    it, so any number of the report traces to its run files. An ablation row that is a Table 1 setting is
    listed once, under Table 1."""
    rows = list(table1_rows)
    for task in S.TASKS:
        for check in checks(runs, task):
            for steps, c in ((check.steps, check.base), (2 * check.steps, check.doubled)):
                row = _cell_row(task, f"convergence: {steps} steps", check.best.title, check.lr, c)
                if row not in rows:  # one check's 2x cell is the next budget's check cell
                    rows.append(row)
    for a in ablations:
        if a.cell.n and a.setting not in S.TABLE1:
            rows.append(_cell_row(a.task, f"ablation: {a.kind}", a.setting.title,
                                  cells[(a.task, S.TABLE1[0].name)][0].lr, a.cell))
    _write(out, "cells", "Every reported cell and the runs behind it", [],
           ["task", "table", "setting", "lr", "mean", "std", "n", "runs"], rows)


def left_out() -> str:
    """The tasks and (setting, task) pairs the study's scope does not run, in words."""
    covered = {t for ts in S.SCOPE.values() for t in ts}
    parts = [f"{', '.join(t for t in S.TASKS if t not in covered)} (no setting)"]
    for s in S.TABLE1:
        missing = [t for t in S.TASKS if t in covered and t not in S.SCOPE.get(s.name, ())]
        if missing:
            parts.append(f"{s.title} on {', '.join(missing)}")
    return "; ".join(parts)


def paired_differences(cells, tasks: list[str]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(task, "DCFT k8 - LoRA r=1", `S.paired`) for DCFT k8 and k2 against LoRA first, then every other
    Table 1 setting, where both cells exist."""
    dcft = [s for s in S.TABLE1 if s.name in ("dcft8", "dcft2")]
    others = sorted((s for s in S.TABLE1 if s not in dcft), key=lambda s: s.name != "lora")
    return [(t, f"{d.title} - {other.title}", S.paired(cells[(t, d.name)][1], cells[(t, other.name)][1]))
            for t in tasks for other in others for d in dcft if (t, d.name) in cells and (t, other.name) in cells]


def write_tables(runs: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    cells = table1_cells(runs)
    tasks = [t for t in S.TASKS if any(k[0] == t for k in cells)]
    # Table 1
    rows, csv_cells = [], []
    for setting in S.TABLE1:
        behind = [r for t in tasks if (t, setting.name) in cells for r in cells[(t, setting.name)][1].runs]
        row = [setting.title, _params_text(cell_params(runs, behind))]
        for t in tasks:
            sel, c = cells.get((t, setting.name), (None, S.Cell({}, [])))
            row.append(_fmt(c) + (f" @ {S._yaml(sel.lr)}" if sel and sel.lr and c.n else "")
                       + ("" if not c.n else " (grid unfinished)" if not tuned(runs, t, setting)
                          else f" (grid's {sel.edge} edge)" if sel.edge else ""))
            if sel and c.n:
                csv_cells.append(_cell_row(t, "table1", setting.title, sel.lr, c))
        rows.append(row)
    notes = [f"Dev score x100 ({', '.join(f'{t}: {S.METRIC[t]}' for t in tasks)}) at each run's best held-out "
             f"step; mean ± sample std over seeds {', '.join(map(str, S.SEEDS))} (n shown when fewer), at the "
             "learning rate (after @) selected on the held-out slice by seed 6 (dcft.study.select); - = not run.",
             f"(grid's high / low edge): the selected rate is the largest / smallest tried so far; the study widens "
             f"a grid at its edge at most {S.MAX_EXTEND} times (dcft.study.MAX_EXTEND), so once it has, a better "
             "rate may lie beyond it.",
             "#Params: the adapter's trainable parameters, classifier head aside, of the runs behind the row's cells "
             "(SoRA, AdaLoRA: the live count after training, which pruning makes vary by run: the mean over the "
             "cells' seeds at the selected rate, with the range).", BEST_STEP_NOTE, "Left out (dcft.study.SCOPE, sized to about 10 hours of the machine): " + left_out() + ".",
             "Runs behind each cell: cells.csv."]
    _write(out, "table1", "Table 1 at MiniLM scale", notes, ["setting", "#Params", *tasks], rows)
    # selection
    sel_rows = []
    for (t, name), (sel, _) in sorted(cells.items()):
        setting = next(s for s in S.TABLE1 if s.name == name)
        for r in sorted(S.runs_of(runs, t, setting), key=lambda r: (r["seed"], r["lr"])):
            if r["seed"] == S.SEED:
                dev = S.dev_score(r, t)
                sel_rows.append([t, setting.title, S._yaml(float(r["lr"])), f"{100 * r['selection_score']:.2f}",
                                 f"{dev:.2f}" if dev is not None else "-",
                                 "selected" if sel.lr and math.isclose(float(r["lr"]), sel.lr) else "", r["run"]])
    _write(out, "selection", "Learning-rate selection (seed 6)",
           ["Held-out and dev scores x100 of every tuning run; the rate with the best held-out score is selected."],
           ["task", "setting", "lr", "held-out", "dev", "", "run"], sel_rows)
    # paired: DCFT against LoRA first, then against every other Table 1 setting
    p_rows = [[t, label, *_paired_text(p)] for t, label, p in paired_differences(cells, tasks)]
    _write(out, "paired", "DCFT minus every other Table 1 setting, paired by seed",
           ["Dev score x100; per-seed differences (seeds 6, 7, 8), mean ± sample std, 95 % t-interval of the mean; "
            "'exceeds noise' = the interval excludes 0. Each setting at its own selected rate (Table 1)."],
           ["task", "difference", "per seed", "mean ± std", "95 % interval", "exceeds noise"], p_rows)
    return {"cells": cells, "cell_rows": csv_cells}


BENCH_FILE = "bench-minilm.json"  # `python -m dcft.bench --model minilm --shapes ...` on an idle machine


def bench_times(path: Path) -> dict[tuple[int, int, str], tuple[float, ...]]:
    """(kernel, stride, impl) -> (median training-step seconds, ratio to LoRA r=1 of the same run, and that
    ratio's quartiles over the timed rounds) of the DCFT training rows of a `dcft.bench` result file, for
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


TARGET_ORDER = ("qk", "qv", "qkv", "qkvo", "all")  # the paper's Table 6 rows, smallest first


def ablated_value(kind: str, setting: S.Setting) -> Any:
    """What an ablation varies, for a DCFT setting: its kernel, stride (= kernel unless set), targets
    ("all" unless set) or initialisation ("normal", the authors', unless set)."""
    o = setting.overrides()
    return {"kernel": o.get("kernel"), "stride": o.get("stride", o.get("kernel")),
            "targets": o.get("targets", "all"), "init": o.get("method.init", "normal")}[kind]


def _order(kind: str, value: Any) -> Any:
    return TARGET_ORDER.index(value) if kind == "targets" else (value != "normal") if kind == "init" else value


@dataclass
class AblationRow:
    task: str
    kind: str  # "kernel", "stride", "targets", "init"
    setting: S.Setting
    value: Any  # ablated_value(kind, setting)
    cell: S.Cell
    vs_k8: dict[str, Any] | None  # S.paired(cell, DCFT k8's cell); None for DCFT k8 itself
    shape: tuple[int, int] | None  # (kernel, stride) of a kernel/stride row: its bench key


def ablation_rows(runs: list[dict[str, Any]], cells) -> list[AblationRow]:
    """Every ablation row with its cell at DCFT k8's selected rate (DCFT k2 in the kernel rows: at its own,
    from Table 1), ordered by the ablated value (kernel and stride ascending, targets as Table 6)."""
    rows = []
    k8 = S.TABLE1[0]
    for task in S.TASKS:
        if (task, k8.name) not in cells:
            continue
        sel, base = cells[(task, k8.name)]
        for kind, settings in S.ABLATIONS.items():
            if task not in S.ABLATION_TASKS[kind]:
                continue
            ref = [S.TABLE1[1], k8] if kind == "kernel" else [k8]
            for s in sorted([*settings, *ref], key=lambda s: _order(kind, ablated_value(kind, s))):
                own = cells.get((task, s.name)) if s in S.TABLE1 else None
                c = own[1] if own else S.cell(runs, task, s, sel.lr)
                shape = (ablated_value("kernel", s), ablated_value("stride", s)) if kind in ("kernel", "stride") \
                    else None
                rows.append(AblationRow(task, kind, s, ablated_value(kind, s), c,
                                        S.paired(c, base) if s is not k8 else None, shape))
    return rows


def write_ablations(runs: list[dict[str, Any]], out: Path, ablations: list[AblationRow], bench: dict) -> None:
    rows = []
    for a in ablations:
        rows.append([a.task, a.kind, a.setting.title, _params_text(cell_params(runs, a.cell.runs)), _fmt(a.cell),
                     *(_paired_text(a.vs_k8)[1:4] if a.vs_k8 else ["-", "-", "-"]),
                     *(_bench_text(bench.get((*a.shape, impl)) if a.shape else None) for impl in ("fast", "reference"))])
    _write(out, "ablations", "Ablations at DCFT k8's selected rate (Tables 4-6, initialisation)",
           ["Dev score x100, mean ± std over seeds 6, 7, 8 at DCFT k8's selected rate (DCFT k2 in the kernel rows: "
            "at its own selected rate, from Table 1); difference to DCFT k8 paired by seed with its 95 % interval.",
            f"Bench step ms: median training step (forward, backward, AdamW) of MiniLM "
            f"with random weights, from `{BENCH_FILE}` (`python -m dcft.bench --model minilm --shapes ...` on an "
            "idle machine), its ratio to LoRA r=1 in the same run and that ratio's interquartile range over the "
            "timed rounds: this harness's path (`impl=fast`, x M then G) and the authors' (`impl=reference`, "
            "Delta built by conv_transpose2d every step, the path behind the paper's time column); - = not "
            "benchmarked."],
           ["task", "ablation", "setting", "#Params", "dev", "- DCFT k8", "95 % interval", "exceeds noise",
            "bench step ms", "bench step ms, authors' path"], rows)


def checks(runs: list[dict[str, Any]], task: str) -> list[S.BudgetCheck]:
    """The task's budget checks that have runs at twice their steps, budget by budget (`dcft.study.budgets`)."""
    out = []
    for steps in S.budgets(task):
        check = S.budget_check(runs, task, steps)
        if check is not None and S.runs_of(runs, task, check.doubled_setting):
            out.append(check)
    return out


def write_convergence(runs: list[dict[str, Any]], out: Path) -> None:
    """The budget checks (`dcft.study.BudgetCheck`), every budget the study walked: the task's best core
    setting at the budget and at 2x its steps, paired by seed, with the check's verdict."""
    rows = []
    for task in S.TASKS:
        for check in checks(runs, task):
            rows.append([task, check.best.title, S._yaml(check.lr), check.steps, _fmt(check.base), 2 * check.steps,
                         _fmt(check.doubled), *_paired_text(check.difference)[1:4], check.verdict])
    _write(out, "convergence", "Has the budget converged? The best core setting at twice the steps",
           ["Dev score x100, mean ± std over seeds 6, 7, 8 at the rate the setting selected at that budget; 2x "
            "minus 1x paired by seed with its 95 % interval. The budget has converged when the interval includes "
            "0 (doubling does not move the score beyond seed noise). A budget that had not converged was doubled "
            "(dcft.study.EARLIER_STEPS) and its core grids run again there, around the rates it had selected."],
           ["task", "setting", "lr", "steps", "dev", "2x steps", "dev at 2x", "2x - 1x", "95 % interval",
            "exceeds noise", "verdict"], rows)


def curve(run: dict[str, Any], task: str) -> list[tuple[int, float]]:
    rec = json.loads((Path(run["path"]) / "result.json").read_text(encoding="utf-8"))
    key = f"validation/{S.METRIC[task]}"
    return [(h["step"], 100 * h[key]) for h in (rec.get("metrics") or {}).get("history", []) if key in h]


def mean_curve(runs: list[dict[str, Any]], task: str, setting: S.Setting, lr: float | None):
    if lr is None:
        return []
    per = [curve(r, task) for r in S.runs_of(runs, task, setting)
           if math.isclose(float(r["lr"]), lr, rel_tol=1e-9) and r["seed"] in S.SEEDS]
    steps = sorted({s for c in per for s, _ in c})
    out = []
    for st in steps:
        vals = [v for c in per for s, v in c if s == st]
        if len(vals) == len(per):
            out.append((st, statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)))
    return out


def step_cells(runs: list[dict[str, Any]], task: str, setting: S.Setting, lr: float | None) -> dict[int, S.Cell]:
    """Dev score x100 per evaluated step, one value per seed (6, 7, 8) at `lr`: the curves as cells."""
    out: dict[int, S.Cell] = {}
    for r in S.runs_of(runs, task, setting) if lr is not None else ():
        if math.isclose(float(r["lr"]), lr, rel_tol=1e-9) and r["seed"] in S.SEEDS:
            for step, v in curve(r, task):
                c = out.setdefault(step, S.Cell({}, []))
                c.values[r["seed"]] = v
                c.runs.append(r["run"])
    return out


def early_mean(by_step: dict[int, S.Cell]) -> S.Cell:
    """Per seed, the mean dev score over the evaluations in the first half of the run (steps <= half the
    last evaluated step): the area under the early learning curve, one number per seed. Only seeds
    evaluated at every one of those steps count."""
    steps = [st for st in sorted(by_step) if st <= max(by_step) / 2] if by_step else []
    seeds = set.intersection(*(set(by_step[st].values) for st in steps)) if steps else set()
    return S.Cell({sd: statistics.fmean(by_step[st].values[sd] for st in steps) for sd in sorted(seeds)},
                  sorted({r for st in steps for r in by_step[st].runs}))


def write_learning_speed(runs: list[dict[str, Any]], out: Path, cells) -> None:
    """Question 5: dev score at the first evaluations for DCFT k8 (the authors' and the LoRA-like
    initialisation), DCFT k2 and LoRA r=1 at their selected rates (the init ablation at DCFT k8's); each
    DCFT row minus LoRA at the first evaluation and over the first half of the run (`early_mean`), paired
    by seed."""
    init, lora = S.ABLATIONS["init"][0], S.TABLE1[2]
    rows = []
    for task in S.TASKS:
        if (task, lora.name) not in cells:
            continue
        base = step_cells(runs, task, lora, cells[(task, lora.name)][0].lr)
        base_half = early_mean(base)
        for s in (S.TABLE1[0], init, S.TABLE1[1], lora):
            sel = cells.get((task, "dcft8" if s is init else s.name))
            by_step = step_cells(runs, task, s, sel[0].lr if sel else None)
            if not by_step:
                continue
            first = min(by_step)
            diff = S.paired(by_step[first], base[first]) if s is not lora and first in base else None
            half = early_mean(by_step)
            half_diff = S.paired(half, base_half) if s is not lora else None
            early = [_fmt(by_step[st]) for st in sorted(by_step)[:3]]
            rows.append([task, s.title, S._yaml(sel[0].lr), *early, *["-"] * (3 - len(early)),
                         _fmt(by_step[max(by_step)]), first, *_paired_text(diff)[1:4], _fmt(half),
                         *_paired_text(half_diff)[1:4]])
    _write(out, "learning_speed", "Learning speed: dev score at the first evaluations (Figure 3's question)",
           ["Dev score x100, mean ± std over seeds 6, 7, 8 at each setting's selected rate (DCFT k8 init=lora at "
            "DCFT k8's), at the first three evaluations and the last; '- LoRA' is the row minus LoRA r=1 at the "
            "first evaluation, paired by seed, with its 95 % interval.",
            "First half: per seed, the mean dev score over the evaluations in the first half of the run (the "
            "area under the early curve); '- LoRA' the same for LoRA r=1 subtracted seed by seed, with its 95 % "
            "interval. The curves: figures/learning_curves.png."],
           ["task", "setting", "lr", "1st eval", "2nd eval", "3rd eval", "last eval", "1st eval step",
            "- LoRA at 1st eval", "95 % interval", "exceeds noise", "first half", "- LoRA, first half",
            "95 % interval, first half", "exceeds noise, first half"], rows)


def pareto_points(runs: list[dict[str, Any]], task: str, cells) -> list[tuple[float, int, int, float, float, str]]:
    """The Pareto figure's points on one task: (#Params mean, smallest, largest, dev mean, std (0 below two
    seeds), setting) of each Table 1 setting with a cell, its #Params from the cell's own runs."""
    pts = []
    for s in S.TABLE1:
        _, c = cells.get((task, s.name), (None, S.Cell({}, [])))
        p = cell_params(runs, c.runs)
        if c.n and p:
            pts.append((p[0], p[1], p[2], c.mean, 0 if c.n < 2 else c.std, s.title))
    return pts


def _pareto_panel(ax, runs: list[dict[str, Any]], task: str, cells) -> None:
    """Score against #Params (log) of the Table 1 settings on one task; dashed: the Pareto front. A setting
    whose count varies by run (SoRA, AdaLoRA) sits at its mean, a horizontal bar spanning its range."""
    pts = pareto_points(runs, task, cells)
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


def _curves_panel(ax, runs: list[dict[str, Any]], task: str, cells) -> None:
    """Dev score against step: DCFT k8 (authors' and LoRA-like initialisation), DCFT k2, LoRA."""
    init = S.ABLATIONS["init"][0]
    for s in (S.TABLE1[0], init, S.TABLE1[1], S.TABLE1[2]):
        sel = cells.get((task, "dcft8" if s is init else s.name))
        lr = sel[0].lr if sel else None
        pts = mean_curve(runs, task, s, lr)
        if pts:
            x, m, sd, _ = zip(*pts)
            ax.plot(x, m, marker="o", ms=3, label=f"{s.title} (lr {S._yaml(lr)})")
            ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], alpha=0.15)
    ax.set_xlabel("optimizer step")
    ax.legend(fontsize=6)


def _convergence_panel(ax, runs: list[dict[str, Any]], task: str, cells) -> None:
    """Dev score against step of each budget check's setting at its budget and at twice its steps."""
    drawn = set()
    for check in checks(runs, task):
        for s in (check.best, check.doubled_setting):
            key = (s.method, s.keys, s.max_steps(task), check.lr)
            pts = mean_curve(runs, task, s, check.lr) if key not in drawn else []
            drawn.add(key)
            if pts:
                x, m, sd, _ = zip(*pts)
                ax.errorbar(x, m, yerr=sd, marker="o", ms=3, capsize=2,
                            label=f"{check.best.title}, {s.max_steps(task)} steps (lr {S._yaml(check.lr)})")
    ax.set_xlabel("optimizer step")
    if drawn:
        ax.legend(fontsize=6)


def write_figures(runs: list[dict[str, Any]], out: Path, cells) -> list[Path]:
    """`pareto` and `learning_curves`, one panel per task, PNG and PDF (dcft.figures' conventions)."""
    from dcft.figures import _save, plt, spread_labels

    tasks = [t for t in S.TASKS if any(k[0] == t and v[1].n for k, v in cells.items())]
    written: list[Path] = []
    for stem, panel, title in (
            ("pareto", _pareto_panel, "score against trainable parameters (mean ± std over seeds; "
                                      "SoRA, AdaLoRA: mean pruned count, bar = range; dashed: Pareto front)"),
            ("learning_curves", _curves_panel, "dev score against optimizer step, mean ± std over seeds at "
                                               "each setting's selected rate"),
            ("convergence", _convergence_panel, "each budget check: the best core setting at the budget and "
                                                "at twice its steps (its rate, seeds 6, 7, 8)")):
        if not tasks:
            break
        width = 4.2 if stem == "pareto" else 3.2  # inches per task panel; the Pareto panel carries ten labels
        fig, axes = plt.subplots(1, len(tasks), figsize=(width * len(tasks), 2.8), squeeze=False)
        for ax, t in zip(axes[0], tasks):
            panel(ax, runs, t, cells)
            ax.set_ylabel(f"dev {S.METRIC[t]} x100")
            ax.set_title(t)
        fig.suptitle(f"MiniLM, CPU study: {title}", fontsize=8)
        fig.tight_layout()
        for ax in axes[0]:
            spread_labels(ax)  # after the layout: labels of nearby points (SST-2's adapters) stop overlapping
        written += _save(fig, out, stem)
    return written


def _panel_rows(rows: list[AblationRow], task: str, kind: str) -> list[AblationRow]:
    """One ablation panel's rows with runs, in table order."""
    return [a for a in rows if a.task == task and a.kind == kind and a.cell.n]


def ablation_series(rows: list[AblationRow], task: str, kind: str) -> list[tuple[str, float, float, int]]:
    """One ablation panel's points in table order: (ablated value, dev mean, std (0 below 2 seeds), seeds)."""
    return [(str(a.value), a.cell.mean, a.cell.std if a.cell.n > 1 else 0.0, a.cell.n)
            for a in _panel_rows(rows, task, kind)]


def _ablation_panel(ax, rows: list[AblationRow], task: str, kind: str, bench: dict) -> None:
    """Dev score (mean ± std over seeds) against the ablated value; for kernel and stride, the bench's
    training-step time of both DCFT paths on a second axis (the paper's time column)."""
    pts = ablation_series(rows, task, kind)
    labels = [a for a, *_ in pts]
    ax.errorbar(range(len(pts)), [m for _, m, _, _ in pts], yerr=[sd for _, _, sd, _ in pts],
                fmt="o-" if kind in ("kernel", "stride") else "o", ms=4,  # a line only along an ordered axis
                capsize=2, color="C0", label="dev score")
    for i, (_, m, _, n) in enumerate(pts):
        if n < len(S.SEEDS):
            ax.annotate(f"n={n}", (i, m), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xticks(range(len(pts)), labels)
    ax.set_xlabel({"kernel": "kernel d (stride = d)", "stride": "stride at kernel 8", "targets": "targets",
                   "init": "initialisation"}[kind])
    ax.set_ylabel(f"dev {S.METRIC[task]} x100")
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


def write_ablation_figure(rows: list[AblationRow], out: Path, bench: dict) -> list[Path]:
    """`ablations`: one panel per (task, ablation) with runs: kernel, stride, targets, initialisation."""
    from dcft.figures import _save, plt

    panels = [(t, k) for t in S.TASKS for k in S.ABLATIONS if ablation_series(rows, t, k)]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.8), squeeze=False)
    for ax, (t, k) in zip(axes[0], panels):
        _ablation_panel(ax, rows, t, k, bench)
    fig.suptitle("MiniLM, CPU study: ablations at DCFT k8's selected rate (mean ± std over seeds 6, 7, 8; "
                 "grey: training-step time on an idle machine)", fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "ablations")


def _record(run: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(run["path"]) / "result.json").read_text(encoding="utf-8"))


def write_compute(runs: list[dict[str, Any]], out: Path) -> float:
    """Wall time of every run (loading, training, evaluations), per task, method and CPU (the study moved
    between machines across sessions: `environment.cpu` of each result file); returns machine-hours: the
    study runs two single-thread runs side by side on the 2 cores, so machine time = run time / 2."""
    per: dict[tuple[str, str, str], list[float]] = {}
    for r in runs:
        rec = _record(r)
        cpu = (rec.get("environment") or {}).get("cpu") or "unknown"
        per.setdefault((r["task"], r["method"], cpu), []).append(float(rec.get("wall_time_s") or 0.0))
    rows = [[t, m, cpu, len(v), f"{sum(v) / 3600:.2f}", f"{statistics.median(v) / 60:.1f}"]
            for (t, m, cpu), v in sorted(per.items())]
    for cpu in sorted({k[2] for k in per}):
        v = [x for k, xs in per.items() if k[2] == cpu for x in xs]
        rows.append(["all", "", cpu, len(v), f"{sum(v) / 3600:.2f}", ""])
    total = sum(sum(v) for v in per.values()) / 3600
    rows.append(["all", "", "all", sum(len(v) for v in per.values()), f"{total:.2f}", ""])
    _write(out, "compute", "Compute spent",
           [f"Run wall time (model load, training, evaluations), one torch thread per run, two runs side by side on "
            f"the 2-core machine: {total:.2f} run-hours = {total / 2:.2f} hours of the machine.",
            "cpu: the result file's `environment.cpu`; the sessions ran on different 2-core machines, so run "
            "times compare only within one cpu (training-time comparisons: the bench, on one idle machine)."],
           ["task", "method", "cpu", "runs", "run-hours", "median min/run"], rows)
    return total / 2


def verdicts(runs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any] | None]:
    """Every difference the report judges against seed noise, keyed (task, table, comparison): DCFT minus
    every other Table 1 setting (`paired`), each ablation minus DCFT k8 (`ablations`) and each budget check,
    2x minus 1x (`convergence`). The learning-speed table reads whole curves, not best steps."""
    cells = table1_cells(runs)
    tasks = [t for t in S.TASKS if any(k[0] == t for k in cells)]
    out = {(t, "paired", label): p for t, label, p in paired_differences(cells, tasks)}
    for a in ablation_rows(runs, cells):
        if a.setting is not S.TABLE1[0]:
            out[(a.task, f"ablations: {a.kind}", f"{a.setting.title} - DCFT k8")] = a.vs_k8
    for t in S.TASKS:
        for check in checks(runs, t):
            out[(t, "convergence", f"{check.best.title}, {2 * check.steps} - {check.steps} steps")] = check.difference
    return out


def _verdict_text(p: dict[str, Any] | None) -> str:
    if p is None or p["exceeds"] is None:
        return "-"
    return f"{p['mean']:+.2f} [{p['lo']:+.2f}, {p['hi']:+.2f}] " + ("exceeds noise" if p["exceeds"] else "within noise")


def write_tie_rule(runs: list[dict[str, Any]], out: Path) -> list[tuple[str, str, str]]:
    """`tie_rule`: the study under the other best-step rule. Where a run's highest held-out score is reached
    at several evaluations, the report takes the earliest (`BEST_STEP_RULE`); here every run's best step is
    taken again from its history with the latest of them, and every verdict (`verdicts`) compared. The
    rates do not move (a tie changes which step is best, not the held-out score a rate is selected on).
    Returns the comparisons whose verdict changes."""
    other = "latest" if BEST_STEP_RULE == "earliest" else "earliest"
    moved = [at_best_step(r, other) for r in runs]
    before, after = verdicts(runs), verdicts(moved)
    rows, changed = [], []
    for key, p in before.items():
        flips = (p or {}).get("exceeds") != (after.get(key) or {}).get("exceeds")
        if flips:
            changed.append(key)
        rows.append([*key, _verdict_text(p), _verdict_text(after.get(key)), "yes" if flips else "no"])
    tied = [r for r in runs if len(tied_steps(r.get("history") or [])) > 1]
    differ = [r for r, m in zip(runs, moved) if m["best"] != r["best"]]
    cells, cells_moved = table1_cells(runs), table1_cells(moved)
    behind = {name for _, c in cells.values() for name in c.runs}
    behind |= {name for a in ablation_rows(runs, cells) for name in a.cell.runs}
    behind |= {name for t in S.TASKS for check in checks(runs, t) for c in (check.base, check.doubled) for name in c.runs}
    shifted = [f"{S.TABLE1[[s.name for s in S.TABLE1].index(name)].title} on {t} {c.mean:.2f} -> "
               f"{cells_moved[(t, name)][1].mean:.2f}" for (t, name), (_, c) in cells.items()
               if c.n and not math.isclose(c.mean, cells_moved[(t, name)][1].mean)]
    _write(out, "tie_rule", f"Best-step ties: the study with the {other} tied step instead of the {BEST_STEP_RULE}", [
        f"{len(tied)} of the {len(runs)} runs reach their highest held-out score at more than one evaluation, "
        f"{len(differ)} of them with different dev scores at the tied steps "
        f"({len([r for r in differ if r['run'] in behind])} behind a reported cell: cells.csv). The report takes the "
        f"{BEST_STEP_RULE} of those steps (dcft.selection.BEST_STEP_RULE, what the training loop records); this "
        f"table recomputes every verdict with the {other} one (dcft.selection.at_best_step). The selected rates are "
        "the same under both rules (a tie moves the best step, not the held-out score a rate is chosen on).",
        "Table 1 cells that move: " + ("; ".join(shifted) if shifted else "none") + ".",
        "Verdicts that change: " + ("; ".join(f"{t} {table}: {c}" for t, table, c in changed) if changed else "none")
        + ". Dev score x100, mean difference [95 % interval], paired by seed."],
           ["task", "table", "comparison", f"{BEST_STEP_RULE} tied step (reported)", f"{other} tied step",
            "verdict changes"], rows)
    return changed


def report(runs_dir: str | Path = S.OUTPUT_ROOT, out: str | Path = "results/cpu-study") -> None:
    runs = S.load(runs_dir)
    out = Path(out)
    res = write_tables(runs, out / "tables")
    bench = bench_times(out / BENCH_FILE)
    ablations = ablation_rows(runs, res["cells"])
    write_ablations(runs, out / "tables", ablations, bench)
    write_cells(out / "tables", runs, res["cell_rows"], ablations, res["cells"])
    write_convergence(runs, out / "tables")
    write_learning_speed(runs, out / "tables", res["cells"])
    write_tie_rule(runs, out / "tables")
    figs = write_figures(runs, out / "figures", res["cells"])
    figs += write_ablation_figure(ablations, out / "figures", bench)
    machine_h = write_compute(runs, out / "tables")
    print(f"{len(runs)} runs ({machine_h:.2f} h of the 2-core machine); wrote {out}/tables/"
          f"{{table1,paired,ablations,convergence,learning_speed,tie_rule,selection,cells,compute}}.{{md,csv}}" + (f" and {len(figs)} figure files" if figs else ""))
