"""`make tables`: the paper's Tables 1-6 rebuilt from our result files, cell by cell beside the
paper's printed numbers (`results/paper/table<N>.csv`), as Markdown, CSV and LaTeX (booktabs).

    python -m dcft.report.tables                            # every table, paper models, into results/tables/
    python -m dcft.report.tables --model minilm --tables 4,5   # Table 4/5 layouts from minilm runs
    python -m dcft.report.tables --runs DIR --out DIR --seeds 6,7,8   # mark cells that lack a seed

Reads result files only: it never trains and runs offline in seconds.

What fills a cell. A table's rows and columns are those of the paper's CSV. A run fills the row
whose method matches (`method.name`) and, for DCFT rows, whose kernel, stride (null = kernel) and
targets match at the paper's rank and initialisation; its task and metric pick the column. Which of
those runs fill the cell is `dcft.report.selection`'s choice, the protocol every table and the CPU study
share: runs compete only along the learning rate, compared on the tuning seed; runs made under another
condition (budget, held-out protocol, processes, precision, device kind, data, code) are left out
with the reason; the cell reports every seed of the chosen rate, mean ± sample std and n. The value
is the metric of the run's best evaluation (`metrics.best`, the paper reports the best dev score;
tied evaluations: the earliest), GLUE ×100 (SQuAD metrics are already ×100). Only completed,
non-debug runs count; failed, unfinished and smoke runs are counted in a footnote; two results of one
identity count once (the newest). Averages follow the paper: MNLI is one task, scored by the mean of
matched and mismatched (this reproduces the paper's printed averages; `results/paper/README.md`).
Time cells: `train.train_time_s` (the training loop, evaluation excluded) in hours.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from dcft import conditions
from dcft.harness.identity import canonical
from dcft.report.selection import TUNING_SEED, Choice, choose, declared_of, describe, identity_facts

ROOT = Path(__file__).resolve().parents[2]
PAPER_DIR = ROOT / "results" / "paper"
TABLES = (1, 2, 3, 4, 5, 6)
MISSING = "—"

TITLES = {
    1: "GLUE dev results",
    2: "DeBERTaV2-xxlarge on GLUE (most efficient DCFT)",
    3: "SQuAD v1.1 and v2.0 (EM / F1)",
    4: "kernel size d (stride = d): score and training time",
    5: "stride with kernel 8: score and training time",
    6: "target matrices (kernel 8)",
}
MODEL_LABEL = {"deberta-v3-base": "DeBERTaV3-base", "roberta-large": "RoBERTa-large",
               "deberta-v2-xxlarge": "DeBERTaV2-xxlarge"}
PAPER_HARDWARE = {"deberta-v3-base": "one NVIDIA 2080 Ti", "roberta-large": "NVIDIA A800",
                  "deberta-v2-xxlarge": "NVIDIA A800"}
TASK_LABEL = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B", "mnli": "MNLI",
              "qnli": "QNLI", "rte": "RTE", "squad": "SQuAD v1.1", "squad_v2": "SQuAD v2.0"}
METRIC_SUFFIX = {"validation_matched/accuracy": "-m", "validation_mismatched/accuracy": "-mm",
                 "validation/exact_match": " EM", "validation/exact": " EM", "validation/f1": " F1"}
SQUAD_TASKS = ("squad", "squad_v2")  # metrics already ×100 in the result files
MAX_PICKED_NOTES = 40  # cells whose choice a table's footnotes spell out (all of them: the CSV)


def column_label(task: str, metric: str) -> str:
    """`("mnli", "validation_matched/accuracy")` -> `"MNLI-m"`; SQuAD gets EM / F1."""
    base = TASK_LABEL.get(task, task)
    if task == "mnli" or task in SQUAD_TASKS:
        return base + METRIC_SUFFIX.get(metric, "/" + metric)
    return base


def scale(task: str) -> float:
    """Factor from a result file's metric to the paper's scale."""
    return 1.0 if task in SQUAD_TASKS else 100.0


# ----------------------------------------------------------------------------------------------
# The paper's tables (layout and numbers)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of a paper table: the setting a run must have to fill it."""

    model: str  # paper model
    setting: str  # label as printed
    method: str
    kernel: int | None = None
    stride: int | None = None
    targets: str | None = None

    def matches(self, run: dict[str, Any]) -> bool:
        """A baseline row takes any configuration of its method (which one fills a cell is
        `dcft.report.selection`'s choice); a DCFT row its kernel, stride and targets at the paper's rank (1)
        and the authors' initialisation (`normal`)."""
        if run["method"] != self.method:
            return False
        if self.kernel is None:
            return True
        method = (run.get("declared") or {}).get("method") or {}
        return ((run["kernel"], run["stride"], run["targets"] or "all") == (self.kernel, self.stride, self.targets)
                and method.get("rank", 1) == 1 and method.get("init", "normal") == "normal")


@dataclass
class PaperTable:
    """A paper table as read from `results/paper/table<N>.csv`."""

    number: int
    rows: list[Row]
    columns: list[tuple[str, str]]  # (task, metric) score columns, in printed order
    has_avg: bool
    has_time: bool
    cells: dict[tuple[str, str, str, str], dict[str, str]]  # (model, setting, task, metric) -> csv row

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.rows))

    def paper(self, model: str, setting: str, task: str, metric: str) -> dict[str, str] | None:
        return self.cells.get((model, setting, task, metric))

    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for t, _ in self.columns))


def _int(s: str) -> int | None:
    return int(float(s)) if s not in ("", None) else None


def load_paper(number: int, paper_dir: str | Path = PAPER_DIR) -> PaperTable:
    """Layout and numbers of paper table `number`."""
    path = Path(paper_dir) / f"table{number}.csv"
    with path.open(encoding="utf-8", newline="") as f:
        recs = list(csv.DictReader(f))
    rows: dict[tuple[str, str], Row] = {}
    columns: dict[tuple[str, str], None] = {}
    cells = {}
    has_avg = has_time = False
    for r in recs:
        key = (r["model"], r["setting"])
        if key not in rows:
            rows[key] = Row(r["model"], r["setting"], r["method"], _int(r["kernel"]), _int(r["stride"]),
                            r["targets"] or None)
        cells[(r["model"], r["setting"], r["task"], r["metric"])] = r
        if r["task"] == "avg":
            has_avg = True
        elif r["metric"] == "time_h":
            has_time = True
        elif r["metric"] != "params":
            columns[(r["task"], r["metric"])] = None
    return PaperTable(number, list(rows.values()), list(columns), has_avg, has_time, cells)


def paper_value(cell: dict[str, str] | None) -> float | None:
    if not cell or cell["value"] in ("", None):
        return None
    return float(cell["value"])


# ----------------------------------------------------------------------------------------------
# Our runs
# ----------------------------------------------------------------------------------------------


@dataclass
class Runs:
    """The result files under a folder, normalised: `usable` runs fill cells; the others are
    counted (`failed`, `unfinished`, `debug`, `duplicates`)."""

    root: Path
    usable: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unfinished: list[dict[str, Any]] = field(default_factory=list)
    debug: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)


def _get(rec: dict[str, Any], key: str, default: Any = None) -> Any:
    v = rec.get(key, default)
    if isinstance(v, float) and math.isnan(v):
        return default
    return v


def normalise(rec: dict[str, Any], root: Path) -> dict[str, Any]:
    """One flat result record (from `dcft.report.results.load_all`) as the fields tables need."""
    method_name = _get(rec, "config.method.name") or _get(rec, "choices.method")
    kernel = _get(rec, "config.method.kernel")
    stride = _get(rec, "config.method.stride")
    kernel = int(kernel) if kernel is not None else None
    stride = int(stride) if stride is not None else kernel  # null stride = kernel
    run_dir = Path(str(_get(rec, "run_dir", "")))
    try:
        rel = run_dir.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = run_dir.as_posix()
    best = {k[len("metrics.best."):]: v for k, v in rec.items()
            if k.startswith("metrics.best.") and "/" in k and isinstance(v, (int, float)) and not
            (isinstance(v, float) and math.isnan(v))}
    t = _get(rec, "train.train_time_s")
    facts = identity_facts(rec)
    declared = declared_of(rec)
    history = _get(rec, "metrics.history")
    return {
        "run": rel,
        "path": run_dir.as_posix(),
        "status": _get(rec, "status"),
        "model": _get(rec, "config.model.name") or _get(rec, "choices.model"),
        "task": _get(rec, "config.task.name") or _get(rec, "choices.task"),
        "method": method_name,
        "kernel": kernel,
        "stride": stride,
        "targets": _get(rec, "config.method.targets"),
        "seed": _get(rec, "config.seed"),
        "preset": _get(rec, "choices.preset"),
        "debug": _get(rec, "choices.debug"),
        "best": best,
        "time_h": float(t) / 3600.0 if t is not None else None,
        "device": _get(rec, "device"),
        "host": _get(rec, "environment.host"),
        "cpu": _get(rec, "environment.cpu") or _get(rec, "environment.processor"),
        "gpu": _get(rec, "environment.gpu") or _get(rec, "environment.gpu_name"),
        "platform": _get(rec, "environment.platform"),
        # SoRA / AdaLoRA: the live count after training (what the paper's SoRA cell counts), else the nominal
        "params_method": _get(rec, "params.after_training.live_params", _get(rec, "params.method")),
        "finished_at": _get(rec, "finished_at") or "",
        "time_condition": conditions.condition({k[len("machine."):]: v for k, v in rec.items()
                                                if k.startswith("machine.")} or None),
        "error": _get(rec, "error.type"),
        "limited": any(_get(rec, k) not in (None, -1) for k in ("config.data.limit_train", "config.train.max_steps")),
        "declared": declared,
        "facts": facts,  # the whole identity, flat (dcft.report.selection.identity_facts)
        "identity": canonical(facts),  # one key per identity: two folders with it are duplicates
        "history": history if isinstance(history, list) else [],
        "lr": _get(rec, "config.train.lr"),
        "selection_score": _get(rec, "metrics.best.score"),
        "holdout": bool(_get(rec, "config.data.holdout")),
        "params_total": _get(rec, "params.total"),
        "params_head": _get(rec, "params.head"),
    }


def load_runs(root: str | Path = "results/runs") -> Runs:
    """Every result file under `root`, sorted into usable and excluded runs."""
    from dcft.report.results import load_all

    root = Path(root)
    out = Runs(root)
    df = load_all(root) if root.exists() else None
    if df is None or df.empty:
        return out
    recs = [normalise(r, root) for r in df.to_dict(orient="records")]
    recs.sort(key=lambda r: r["run"])
    latest: dict[tuple, dict[str, Any]] = {}
    for r in recs:
        if r["debug"]:
            out.debug.append(r)
        elif r["status"] == "failed":
            out.failed.append(r)
        elif r["status"] != "completed":
            out.unfinished.append(r)
        else:
            key = r["identity"]  # the whole effective configuration (seed included)
            old = latest.get(key)
            if old is None:
                latest[key] = r
            else:  # one configuration and seed in two folders: keep the newest
                keep, drop = (r, old) if r["finished_at"] >= old["finished_at"] else (old, r)
                latest[key] = keep
                out.duplicates.append({**drop, "reason": f"same effective configuration as {keep['run']} (newer)"})
    out.usable = sorted(latest.values(), key=lambda r: r["run"])
    return out


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One cell: ours (mean, std, n, runs) beside the paper's."""

    model: str  # our model
    paper_model: str
    row: Row
    task: str  # task name, "avg", or "" (#Params)
    metric: str  # result key, "score" (avg), "time_h" or "params"
    ours: float | None = None
    std: float | None = None
    n: int = 0
    runs: list[str] = field(default_factory=list)
    paper: float | None = None
    printed: str = ""
    match: bool | None = None  # #Params only: printed value follows from our count
    lrs: list[float] = field(default_factory=list)  # learning rate(s) of the runs used
    not_selected: list[str] = field(default_factory=list)  # runs that could fill the cell, with the reason
    missing: list[int] = field(default_factory=list)  # seeds the table asks for (--seeds) that the cell lacks
    machines: int = 0  # time cells: how many accelerators (GPU name, else CPU model) its runs were timed on
    low: float | None = None  # #Params only: the smallest and largest count of the cell's runs (pruning methods vary)
    high: float | None = None
    condition: str = ""  # time cells: idle, loaded or unknown (`dcft.conditions`; loaded if any run was)

    @property
    def diff(self) -> float | None:
        if self.ours is None or self.paper is None or self.metric == "params":
            return None
        return self.ours - self.paper


def _stats(values: list[float]) -> tuple[float | None, float | None, int]:
    if not values:
        return None, None, 0
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std, len(values)


def _params_lookup(params_csv: Path | None) -> list[dict[str, str]]:
    if params_csv is None or not Path(params_csv).exists():
        return []
    with Path(params_csv).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def percent_matches(count: int, backbone: int, printed: str) -> bool:
    """Whether a printed percentage ("0.08%") equals `count / backbone x 100` rounded (half up) or
    truncated to the printed decimals (the PEFT papers' "% of the backbone's parameters")."""
    from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

    m = re.fullmatch(r"\s*([0-9]+(?:\.([0-9]+))?)\s*%\s*", printed)
    if not m:
        raise ValueError(f"cannot parse printed percentage {printed!r}")
    exact = Decimal(count) * 100 / Decimal(backbone)
    q = Decimal(1).scaleb(-len(m.group(2) or ""))
    return Decimal(m.group(1)) in (exact.quantize(q, ROUND_HALF_UP), exact.quantize(q, ROUND_DOWN))


def _params_cell(model: str, row: Row, paper: dict[str, str] | None, matched: list[dict[str, Any]],
                 params_rows: list[dict[str, str]], table_number: int = 0) -> tuple[Cell, str, str]:
    """The #Params cell of a row, where our count came from ("runs", "params.csv" or ""), and a
    cross-check note where the runs' own count differs from `make params`'. The count is that of the
    runs selected for the row's cells (`params.method` in their result files: the setting that actually
    ran; SoRA and AdaLoRA: the live count after training, which varies by run: the mean, with the
    range in `low`/`high`); `make params` (the paper's settings counted on the meta device) fills rows
    without runs."""
    from dcft.measure.params import in_paper_units

    cell = Cell(model, row.model, row, "", "params", printed=(paper or {}).get("printed", ""),
                paper=paper_value(paper))
    candidates = [p for p in params_rows if p["model"] == model and p["method"] == row.method and (
        row.kernel is None
        or (_int(p["kernel"]), _int(p["stride"]), p["targets"]) == (row.kernel, row.stride, row.targets))]
    # several settings of one method (e.g. LoRA r=1 and r=8): the row of this table and printed cell first
    candidates.sort(key=lambda p: (p.get("table") != str(table_number), p.get("paper") != cell.printed))
    listed = int(candidates[0]["params"]) if candidates else None
    counts = [int(r["params_method"]) for r in matched if r["params_method"] is not None]
    crosscheck = ""
    if counts:
        cell.ours, cell.low, cell.high = statistics.fmean(counts), float(min(counts)), float(max(counts))
        cell.n, source = len(counts), "runs"
        if listed is not None and set(counts) != {listed}:
            ours = (f"{min(counts):,}" if len(set(counts)) == 1 else
                    f"{statistics.fmean(counts):,.0f} on average ({min(counts):,} to {max(counts):,})")
            crosscheck = f"{row.setting}: the runs count {ours}, `make params` {listed:,} for the paper's setting"
    elif listed is not None:
        cell.ours, cell.n, source = float(listed), 1, "params.csv"
        cell.low = cell.high = cell.ours
    else:
        return cell, "", ""
    if model == row.model and cell.printed and cell.printed != MISSING and cell.low == cell.high:
        if cell.printed.strip().endswith("%"):
            backbones = {int(r["params_total"]) - int(r["params_method"]) - int(r["params_head"]) for r in matched
                         if None not in (r["params_total"], r["params_method"], r["params_head"])}
            if len(backbones) == 1:
                cell.match = percent_matches(int(cell.ours), backbones.pop(), cell.printed)
        else:
            units = "binary" if row.method == "dcft" else "decimal"
            _, cell.match = in_paper_units(int(cell.ours), cell.printed, units)
    return cell, source, crosscheck


def build_cells(table: PaperTable, runs: Runs, model: str | None = None, params_csv: Path | None = None,
                tuning_seed: int = TUNING_SEED, seeds: Iterable[int] | None = None) -> tuple[list[Cell], dict[str, Any]]:
    """Every cell of `table` for our `model` (None: each paper model with its own runs; a model
    name: the first paper model's layout and numbers, our runs of `model`). Each cell's runs are
    `dcft.report.selection.choose`'s (compared on `tuning_seed`; `seeds`: the seeds a cell should have).
    Also returns facts for the footnotes (which runs were used, how each cell was picked, where
    #Params came from)."""
    paper_models = table.models if model is None else table.models[:1]
    params_rows = _params_lookup(params_csv)
    cells: list[Cell] = []
    info: dict[str, Any] = {"used": [], "params_source": set(), "pairs": [], "unused": [], "contested": 0,
                            "picked": [], "tuning_seed": tuning_seed, "seeds": seeds}
    for pm in paper_models:
        ours_model = pm if model is None else model
        info["pairs"].append((ours_model, pm))
        rows = [r for r in table.rows if r.model == pm]
        column = {task: [(row.setting, r) for row in rows for r in runs.usable
                         if r["model"] == ours_model and r["task"] == task and row.matches(r)] for task in table.tasks()}
        for row in rows:
            selected: dict[str, Choice] = {}
            for task in table.tasks():
                choice = choose([r for label, r in column[task] if label == row.setting], tuning_seed=tuning_seed,
                                seeds=seeds, context=column[task])
                selected[task] = choice
                where = f"{row.setting} / {TASK_LABEL.get(task, task)}"
                info["unused"].extend({**r, "cell": where, "reason": lo.reason} for lo in choice.left_out for r in lo.runs)
                info["contested"] += choice.contested
                if choice.contested or choice.empty:
                    info["picked"].append((where, choice))
            matched = [r for task in table.tasks() for r in selected[task].runs]
            pcell, source, crosscheck = _params_cell(ours_model, row, table.paper(pm, row.setting, "", "params"),
                                                     matched, params_rows, table.number)
            if source:
                info["params_source"].add(source)
            if crosscheck:
                info.setdefault("crosscheck", []).append(crosscheck)
            cells.append(pcell)
            metrics = list(table.columns) + ([(t, "time_h") for t in table.tasks()] if table.has_time else [])
            for task, metric in metrics:
                paper = table.paper(pm, row.setting, task, metric)
                cell = Cell(ours_model, pm, row, task, metric, paper=paper_value(paper),
                            printed=(paper or {}).get("printed", ""))
                use = selected[task].runs
                if metric == "time_h":
                    use = [r for r in use if r["time_h"] is not None]
                    values = [r["time_h"] for r in use]
                    cell.machines = len({accelerator(r) for r in use})
                else:
                    use = [r for r in use if metric in r["best"]]
                    values = [r["best"][metric] * scale(task) for r in use]
                cell.ours, cell.std, cell.n = _stats(values)
                cell.runs = [r["run"] for r in use]
                if metric == "time_h":
                    cell.condition = conditions.worst_condition(r["time_condition"] for r in use)
                cell.lrs = sorted({r["lr"] for r in use if r["lr"] is not None})
                cell.missing = list(selected[task].missing) if use else []
                cell.not_selected = [f"{r['run']} ({lo.reason})" for lo in selected[task].left_out for r in lo.runs]
                info["used"].extend(use)
                cells.append(cell)
            if table.has_avg:
                kinds = ["score"] + (["time_h"] if table.has_time else [])
                for kind in kinds:
                    cells.append(_average(cells, ours_model, row, kind, table))
    return cells, info


def task_scores(cells: Iterable[Cell], row: Row, kind: str, table: PaperTable, which: str) -> dict[str, float] | None:
    """Per-task scores of one row (`which` = "ours" or "paper") the paper's way: a task's score
    is the mean of its metrics that the paper prints for this row (MNLI: matched and mismatched
    when both are printed). None if a task is missing."""
    out = {}
    by_task: dict[str, list[float]] = {}
    for c in cells:
        if c.row != row or c.task in ("", "avg") or (c.metric == "time_h") != (kind == "time_h"):
            continue
        if c.paper is None:  # not printed for this row (e.g. RoBERTa-large MNLI-mm): not in its average
            continue
        v = c.ours if which == "ours" else c.paper
        by_task.setdefault(c.task, []).append(v)
    for task in table.tasks():
        vals = by_task.get(task)
        if not vals or any(v is None for v in vals):
            return None
        out[task] = statistics.fmean(vals)
    return out


def _average(cells: list[Cell], model: str, row: Row, kind: str, table: PaperTable) -> Cell:
    paper = table.paper(row.model, row.setting, "avg", kind)
    cell = Cell(model, row.model, row, "avg", kind, paper=paper_value(paper), printed=(paper or {}).get("printed", ""))
    scores = task_scores(cells, row, kind, table, "ours")
    if scores:
        cell.ours = statistics.fmean(scores.values())
        cell.n = min(c.n for c in cells if c.row == row and c.task not in ("", "avg")
                     and (c.metric == "time_h") == (kind == "time_h") and c.paper is not None)
        if kind == "time_h":
            cell.condition = conditions.worst_condition(c.condition for c in cells if c.row == row and c.metric == "time_h"
                                             and c.ours is not None)
    return cell


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------


def _num(v: float, time: bool = False) -> str:
    """2 decimals; times under 0.1 h with 3 significant digits (CPU-study runs take minutes)."""
    if time and 0 < abs(v) < 0.1:
        return f"{v:.3g}"
    return f"{v:.2f}"


def format_cell(c: Cell) -> str:
    """`ours vs paper (ours - paper)`: ours `mean±std (n=k)` over seeds, 2 decimals, and the seeds the
    table asks for that the cell lacks; the paper's score as printed (its time in hours); "—" where
    missing. #Params: the count, or the mean with its range where it varies by run (SoRA, AdaLoRA)."""
    time = c.metric == "time_h"
    if c.metric == "params":
        ours = f"{round(c.ours):,}" if c.ours is not None else MISSING
        if c.ours is not None and c.low != c.high:
            ours += f" ({round(c.low):,} to {round(c.high):,})"
        paper = c.printed or MISSING
        if ours == MISSING and paper == MISSING:
            return MISSING
        mark = {True: " ✓", False: " ✗", None: ""}[c.match]
        return f"{ours} vs {paper}{mark}"
    if c.ours is None:
        ours = MISSING
    else:
        ours = _num(c.ours, time)
        if c.std is not None:
            ours += f"±{_num(c.std, time)}"
        if time:
            ours += conditions.TIME_MARKS.get(c.condition, "")
        marks = []
        if c.missing and c.task != "avg":
            marks.append(f"n={c.n}; seed{'s' if len(c.missing) > 1 else ''} {', '.join(map(str, c.missing))} missing")
        elif c.n > 1 and c.task != "avg":
            marks.append(f"n={c.n}")
        if time and c.machines > 1:
            marks.append(f"{c.machines} machines")
        if marks:
            ours += f" ({', '.join(marks)})"
    paper = MISSING if c.paper is None else (_num(c.paper, time) if time or not c.printed else c.printed)
    if ours == MISSING and paper == MISSING:
        return MISSING
    # no difference across hardware: the paper's times are GPU hours, never comparable with ours
    diff = "" if c.diff is None or time else " (" + ("+" if c.diff >= 0 else "-") + _num(abs(c.diff), time) + ")"
    return f"{ours} vs {paper}{diff}"


@dataclass
class Grid:
    """A formatted table: header, rows of strings, title and footnotes."""

    number: int
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str]


def accelerator(run: dict[str, Any]) -> str:
    """What a run's time was measured on: its GPU's name, else its CPU's model."""
    return str(run.get("gpu") or run.get("cpu") or run.get("device") or "unknown")


def _hardware(runs: list[dict[str, Any]]) -> str:
    kinds = []
    for r in runs:
        parts = [str(r["device"] or "unknown device")]
        if r.get("gpu"):
            parts.append(str(r["gpu"]))
        where = ", ".join(str(x) for x in (r.get("cpu"), r.get("platform")) if x)
        parts.append(f"host {r['host'] or 'unknown'}" + (f" ({where})" if where else ""))
        kinds.append(" on ".join(parts))
    kinds = sorted(set(kinds))
    return "; ".join(kinds) if kinds else "no runs"


def _excluded_note(runs: Runs, table: PaperTable, pairs: list[tuple[str, str]]) -> str | None:
    def relevant(r):
        for ours_model, pm in pairs:
            if r["model"] == ours_model and r["task"] in table.tasks() and any(
                    row.model == pm and row.matches(r) for row in table.rows):
                return True
        return False

    parts = []
    failed = [r for r in runs.failed if relevant(r)]
    if failed:
        shown = ", ".join(f"{r['run']} ({r['error'] or 'failed'})" for r in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        parts.append(f"{len(failed)} failed run{'s' if len(failed) > 1 else ''} excluded: {shown}{more}")
    for lst, what, why in ((runs.unfinished, "unfinished", " (running or interrupted)"),
                           (runs.debug, "debug/smoke", ""),
                           (runs.duplicates, "duplicate", " (one effective configuration in two folders; the "
                                                          "newest kept)")):
        k = sum(1 for r in lst if relevant(r))
        if k:
            parts.append(f"{k} {what} run{'s' if k > 1 else ''} excluded{why}")
    return "; ".join(parts) + "." if parts else None


def make_grid(table: PaperTable, cells: list[Cell], info: dict[str, Any], runs: Runs, model: str | None) -> Grid:
    """The formatted table with its footnotes."""
    n = table.number
    score_cols = [column_label(t, m) for t, m in table.columns]
    multi_model = len({c.model for c in cells}) > 1 or n == 1
    lead = (["model"] if multi_model else []) + ["setting" if n in (4, 5, 6) else "method", "#Params"]
    if table.has_time:
        lead.append("metric")
    header = lead + score_cols + (["Avg"] if table.has_avg else [])
    rows = []
    pairs = info["pairs"]
    for ours_model, pm in pairs:
        for row in (r for r in table.rows if r.model == pm):
            rc = [c for c in cells if c.row == row and c.model == ours_model]
            get = {(c.task, c.metric): c for c in rc}
            label = row.setting
            kinds = ["score"] + (["time_h"] if table.has_time else [])
            for kind in kinds:
                line = ([ours_model] if multi_model else []) + [label]
                line.append(format_cell(get[("", "params")]) if kind == "score" else "")
                if table.has_time:
                    line.append("score" if kind == "score" else "time (h)")
                for task, metric in table.columns:
                    line.append(format_cell(get[(task, metric if kind == "score" else "time_h")]))
                if table.has_avg:
                    line.append(format_cell(get[("avg", kind)]))
                rows.append(line)

    paper_names = ", ".join(MODEL_LABEL.get(pm, pm) for _, pm in pairs)
    ours_names = ", ".join(dict.fromkeys(om for om, _ in pairs))
    notes = [
        f"Each cell: ours vs paper (ours − paper). Ours: {ours_names} runs under `{runs.root.as_posix()}`; paper: "
        f"{paper_names} (paper Table {n}, `results/paper/table{n}.csv`)."
        + (" The paper column is the paper's model, not ours."
           if model is not None and model not in table.models else ""),
        "Scores: the metric of the best dev evaluation (the paper reports the best), ×100 "
        "(CoLA Matthews correlation, STS-B Pearson, accuracy otherwise; SQuAD EM / F1). "
        "Where several seeds ran: mean±std (sample std) and n; a single run shows its value.",
        f"{MISSING}: no completed run (ours) or not printed (paper); nothing is filled in.",
    ]
    if table.has_avg:
        notes.append("Avg: mean over the row's tasks, MNLI counting once as the mean of matched and mismatched "
                     "accuracy (where the paper prints one MNLI number, that number), as the paper averages: this rule "
                     "reproduces 6 of the 8 distinct DeBERTaV3-base averages of Table 1, MNLI-m alone 1, m and mm as "
                     "two cells none. Ours only when every task has a run; mean of the per-task means.")
    if table.has_time:
        used = [r for r in info["used"] if r["time_h"] is not None]
        hw = ", ".join(dict.fromkeys(PAPER_HARDWARE.get(pm, "?") for _, pm in pairs))
        notes.append(f"Time: training wall time in hours. Ours: `train.train_time_s` (training loop, evaluation "
                     f"excluded) on {_hardware(used)}. Paper: {hw}. No difference is shown for times: the paper's "
                     "were measured on other hardware."
                     + (" A time averaged over runs timed on several machines (GPU or CPU models) says so: its runs "
                        "do not compare." if any(c.machines > 1 for c in cells) else ""))
        conds = {c.condition for c in cells if c.metric == "time_h" and c.ours is not None}
        if "loaded" in conds:
            notes.append(f"{conditions.TIME_MARKS['loaded']} {conditions.RULE}; such times are not comparable with others.")
        if conditions.UNKNOWN in conds:
            notes.append(f"{conditions.TIME_MARKS[conditions.UNKNOWN]} the result files record no machine load: "
                         "the conditions of these times are unknown.")
    src = info["params_source"]
    notes.append("#Params: the method's own trainable parameters (head excluded), ours exact "
                 + ("from the runs' recorded `params.method` (the setting that ran)" if src == {"runs"} else
                    "from `results/tables/params.csv` (`make params`: the paper's setting on the meta device; "
                    "no runs)" if src == {"params.csv"} else
                    "from the runs' recorded `params.method`, rows without runs from `make params`" if src else
                    "(no count available)")
                 + " (SoRA, AdaLoRA: the live count after training, `params.after_training`, which varies by run: "
                   "the mean over the runs selected for the row's cells, with its range)"
                 + "; ✓/✗: the printed value does (not) follow from the count in the paper's units "
                 "(binary for DCFT, decimal for baselines; a printed % against the run's backbone size).")
    for note in info.get("crosscheck", []):
        notes.append(f"#Params cross-check: {note}.")
    holdout = any(r["holdout"] for r in info["used"])
    seed = info["tuning_seed"]
    asked = sorted(set(info["seeds"] or ()))
    notes.append(
        "Selection (`dcft.report.selection`, one protocol for every table): a cell's runs compete only along the learning "
        "rate. Runs that differ in anything else of their identity (budget, initialisation, method settings, held-out "
        "protocol, processes, precision, device kind, data or model files, code revision) never "
        "compete: one condition fills the cell (the one most rows of the column ran under, then the one most rows ran "
        f"several seeds under, then the most runs) and the others are left out. Among the rates, the one whose seed-{seed} run has the best "
        + ("selection score (the held-out slice of the training set with `data.holdout` > 0, dev reported beside; "
           "dev otherwise)" if holdout else "dev score (as the paper: \"we tune the learning rate and pick the best "
                                            "learning rate for every method\", Appendix E)")
        + " is chosen, every rate compared on that one seed (ties: the smaller rate); the cell reports every seed of "
        "the chosen rate" + (f", and names the seeds of {', '.join(map(str, asked))} it lacks" if asked else "")
        + ". Best step: a run's score is its best evaluation; where evaluations tie at the best selection score, the "
        "earliest counts (what the training loop records). The CSV names each cell's runs and rate (`runs`, `lr`) "
        f"and every run passed over (`not_selected`). Cells with a choice: {info['contested']}.")
    picked = info["picked"]
    for where, choice in picked[:MAX_PICKED_NOTES]:
        notes.append(f"Picked {where}: {describe(choice, seed)}.")
    if len(picked) > MAX_PICKED_NOTES:
        notes.append(f"And {len(picked) - MAX_PICKED_NOTES} more cells with a choice (the CSV's `not_selected`).")
    if n in (1, 2, 3):
        notes.append("Settings: DCFT runs its preset (`conf/hp/<preset>/<model>/<task>.yaml`, the authors' scripts), "
                     "each baseline its own source's (`conf/method_hp/own/<model>/<method>/<task>.yaml`, which cites "
                     "the source and states where the run differs: fp32 where fairseq's RoBERTa-large recipe, "
                     "DeBERTa's xxlarge-v2 and DeBERTaV3-base MNLI blocks and the LoRA repository's DeBERTaV2-xxlarge "
                     "scripts train in fp16; the dataset's batch size and length; DeBERTaV3-base LoRA at scaling 2 "
                     "where SoRA's script has 1; HAdapter with SiLU where OpenDelta's adapter has gelu_new; "
                     "DeBERTaV3-base PAdapter's optimiser borrowed from SoRA's Houlsby-adapter script, no "
                     "Pfeiffer-adapter script for it having been found). Learning rates: every method's, DCFT's "
                     f"included, swept the same way per task around its source rate (`make table{n}-lr`; the "
                     "CPU study likewise, `make cpu-study`).")
    excl = _excluded_note(runs, table, pairs)
    if excl:
        notes.append(excl)
    presets = sorted({str(r["preset"]) for r in info["used"]})
    if len(presets) > 1:
        notes.append(f"Cells come from runs of several hyperparameter presets ({', '.join(presets)}).")
    limited = sorted({r["run"] for r in info["used"] if r["limited"]})
    if limited:
        notes.append(f"{len(limited)} run{'s' if len(limited) > 1 else ''} used a shortened schedule or data "
                     "(`data.limit_train` or `train.max_steps`).")
    seen = set()
    for c in cells:
        pc = table.paper(c.row.model, c.row.setting, c.task, c.metric)
        note = (pc or {}).get("note", "")
        if not note or note in seen or note.startswith(("binary units", "wall-clock")):
            continue
        seen.add(note)
        where = c.row.setting + (f", {column_label(c.task, c.metric)}" if c.task not in ("", "avg") else
                                 ", Avg" if c.task == "avg" else ", #Params")
        notes.append(f"Paper ({MODEL_LABEL.get(c.row.model, c.row.model)}, {where}): {note}.")
    title = f"Table {n} — {TITLES[n]}" + (f" ({model} runs)" if model is not None else "")
    return Grid(n, title, header, rows, notes)


def to_markdown(g: Grid) -> str:
    lines = [f"# {g.title}", "", "| " + " | ".join(g.header) + " |", "|" + "---|" * len(g.header)]
    lines += ["| " + " | ".join(r) + " |" for r in g.rows]
    lines += ["", *[f"- {n}" for n in g.notes], ""]
    return "\n".join(lines)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "†": r"$\dagger$",
        "±": r"$\pm$", "—": "---", "−": "$-$", "×": r"$\times$", "✓": r"\checkmark{}", "✗": r"$\times$",
        "≠": r"$\neq$", "`": ""}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(g: Grid) -> str:
    """A booktabs table (needs \\usepackage{booktabs} and amssymb for \\checkmark)."""
    cols = "l" * len(g.header)
    out = [f"% {g.title}. Generated by `make tables` (dcft/report/tables.py); needs booktabs and amssymb.",
           r"\begin{table*}[t]", r"\centering", r"\scriptsize", f"\\caption{{{tex_escape(g.title)}}}",
           f"\\begin{{tabular}}{{{cols}}}", r"\toprule",
           " & ".join(tex_escape(h) for h in g.header) + r" \\", r"\midrule"]
    out += [" & ".join(tex_escape(c) for c in r) + r" \\" for r in g.rows]
    out += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip\raggedright\footnotesize"]
    out += [tex_escape(n) + r"\par" for n in g.notes]
    out += [r"\end{table*}", ""]
    return "\n".join(out)


CSV_COLUMNS = ["table", "model", "paper_model", "setting", "method", "kernel", "stride", "targets", "task", "metric",
               "ours", "ours_std", "n", "ours_min", "ours_max", "missing_seeds", "paper", "paper_printed", "diff", "match",
               "lr", "runs", "not_selected"]


def to_csv(number: int, cells: list[Cell]) -> str:
    """One row per cell (tidy), numbers unformatted (4 decimals), run folders relative to --runs. #Params
    rows: `ours` the mean count of the `n` runs behind the row (rounded), `ours_min` / `ours_max` its range
    where it varies (SoRA, AdaLoRA). `missing_seeds`: seeds asked for (--seeds) that the cell lacks."""
    f = io.StringIO()
    w = csv.writer(f, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    for c in cells:
        ours = "" if c.ours is None else (str(round(c.ours)) if c.metric == "params" else fmt(c.ours))
        varies = c.metric == "params" and c.low != c.high
        w.writerow([number, c.model, c.paper_model, c.row.setting, c.row.method, c.row.kernel or "",
                    c.row.stride or "", c.row.targets or "", c.task, c.metric, ours, fmt(c.std), c.n,
                    round(c.low) if varies else "", round(c.high) if varies else "", ";".join(map(str, c.missing)),
                    "" if c.paper is None else f"{c.paper:g}", c.printed, fmt(c.diff),
                    "" if c.match is None else str(c.match).lower(), ";".join(f"{v:g}" for v in c.lrs),
                    ";".join(c.runs), ";".join(c.not_selected)])
    return f.getvalue()


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def build(number: int, runs: Runs, model: str | None = None, paper_dir: str | Path = PAPER_DIR,
          params_csv: Path | None = None, tuning_seed: int = TUNING_SEED,
          seeds: Iterable[int] | None = None) -> tuple[Grid, list[Cell]]:
    table = load_paper(number, paper_dir)
    cells, info = build_cells(table, runs, model, params_csv, tuning_seed, seeds)
    return make_grid(table, cells, info, runs, model), cells


def write_tables(runs_dir: str | Path = "results/runs", out: str | Path = "results/tables",
                 numbers: Iterable[int] = TABLES, model: str | None = None, paper_dir: str | Path = PAPER_DIR,
                 params_csv: str | Path | None = None, tuning_seed: int = TUNING_SEED,
                 seeds: Iterable[int] | None = None) -> list[Path]:
    """Build the tables and write `table<N>[_<model>].{md,csv,tex}` into `out`; returns the paths."""
    from dcft.report.results import atomic_write_text

    out = Path(out)
    params_csv = Path(params_csv) if params_csv is not None else out / "params.csv"
    runs = load_runs(runs_dir)
    written = []
    for n in numbers:
        grid, cells = build(n, runs, model, paper_dir, params_csv, tuning_seed, seeds)
        stem = f"table{n}" + (f"_{model}" if model else "")
        for ext, text in (("md", to_markdown(grid)), ("csv", to_csv(n, cells)), ("tex", to_latex(grid))):
            atomic_write_text(out / f"{stem}.{ext}", text)
            written.append(out / f"{stem}.{ext}")
        filled = sum(1 for c in cells if c.ours is not None and c.metric != "params")
        total = sum(1 for c in cells if c.metric != "params")
        print(f"table {n}: {filled}/{total} cells with our runs -> {out}/{stem}.{{md,csv,tex}}")
    ex = (len(runs.failed), len(runs.unfinished), len(runs.debug), len(runs.duplicates))
    print(f"{len(runs.usable)} usable runs under {runs_dir}; excluded: {ex[0]} failed, {ex[1]} unfinished, "
          f"{ex[2]} debug/smoke, {ex[3]} duplicates")
    return written


def _numbers(s: str) -> list[int]:
    nums = [int(x) for x in s.replace(" ", "").split(",") if x]
    bad = [x for x in nums if x not in TABLES]
    if bad:
        raise argparse.ArgumentTypeError(f"no table {bad}; valid: {', '.join(map(str, TABLES))}")
    return nums


def _seed_list(s: str) -> list[int]:
    try:
        return [int(x) for x in s.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {s!r}: write integers separated by commas, e.g. 6,7,8") from None


def main(argv: list[str] | None = None) -> None:
    from dcft.harness.console import help_text

    ap = argparse.ArgumentParser(prog="python -m dcft.report.tables", description=help_text(__doc__))
    ap.add_argument("--runs", default="results/runs", help="folder searched for result.json files")
    ap.add_argument("--out", default="results/tables", help="output folder (default results/tables)")
    ap.add_argument("--model", default=None,
                    help="build every layout from this model's runs (paper column: the table's first paper model); "
                         "default: each paper model from its own runs")
    ap.add_argument("--tables", type=_numbers, default=list(TABLES), help="comma-separated table numbers (default all)")
    ap.add_argument("--paper", default=str(PAPER_DIR), help="folder with the paper's table<N>.csv")
    ap.add_argument("--params", default=None, help="params.csv of `make params` (default <out>/params.csv)")
    ap.add_argument("--tuning-seed", type=int, default=TUNING_SEED,
                    help=f"the seed every learning rate of a cell is compared on (default {TUNING_SEED}, the config's)")
    ap.add_argument("--seeds", type=_seed_list, default=None,
                    help="comma-separated seeds each cell should have, e.g. 6,7,8: a cell lacking some says which "
                         "(default: the tuning seed)")
    args = ap.parse_args(argv)
    write_tables(args.runs, args.out, args.tables, args.model, args.paper, args.params, args.tuning_seed, args.seeds)


if __name__ == "__main__":
    main(sys.argv[1:])
