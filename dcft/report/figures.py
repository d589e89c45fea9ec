"""`make figures`: the paper's ablation plots and Figures 2 and 3 from our result files, PNG and
PDF, into results/figures/ (matplotlib, Agg; never trains).

    python -m dcft.report.figures                          # DeBERTaV3-base runs
    python -m dcft.report.figures --model minilm           # the same figures from minilm runs (files *_minilm.*)

- `table4_kernel`: score and training time against kernel size d (stride = d), per task and their
  average, the paper's (Table 4) beside ours.
- `table5_stride`: the same against the stride at kernel 8 (Table 5).
- `figure2_time`: total training time of DCFT and LoRA per task (CoLA, RTE, MRPC, QNLI), ours
  (the paper's Figure 2 prints no numbers; its text is quoted on the plot).
- `figure3_curves`: dev score and training loss against the optimizer step, DCFT and LoRA on one
  task (SST-2 in the paper), from the runs' `metrics.history` and their `log.jsonl`.

Runs are selected exactly as `dcft.report.tables` selects them (completed, non-debug, newest duplicate; each
setting's runs on a task by `dcft.report.selection`: one condition, the learning rate chosen on the tuning seed).
A figure whose runs are missing is skipped with a message, except the ablation plots, which
always show the paper's side.

Conventions shared by every figure: one colour per task (`TASK_COLORS`) and per method setting
(`method_color`); one time unit for all figures of a build (hours, or minutes when every run
took less than an hour, `time_unit`); lines join points only where a series has at least
`MIN_CURVE_POINTS` points (fewer are drawn as markers); error bars (sample std) where a point has
several seeds; a caption line under each figure naming our model, hardware and training budget.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dcft.report import tables as T  # noqa: E402

PAPER_WIDTH_IN = 6.75  # two-column width of an ACL/COLING page, inches
COLUMN_WIDTH_IN = 3.3
STYLE = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
         "ytick.labelsize": 7, "lines.linewidth": 1.3, "lines.markersize": 4, "axes.spines.top": False,
         "axes.spines.right": False, "savefig.dpi": 200}
FIG2_TASKS = ("cola", "rte", "mrpc", "qnli")
FIG_KERNELS = (2, 8)  # DCFT settings of Figures 2 and 3: the paper's "DCFT †" (best) and "DCFT Δ" (most efficient)
SCORE_NAME = {"cola": "Matthews corr.", "stsb": "Pearson r", "squad": "F1", "squad_v2": "F1"}
MIN_CURVE_POINTS = 3  # fewer points are markers, not a curve
# One colour per task in every figure (tab10 order), and per method setting (Dark2, never a task colour's role).
TASK_COLORS = {t: plt.get_cmap("tab10")(i) for i, t in
               enumerate(("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "squad", "squad_v2"))}
_METHOD_ORDER = ("LoRA", "DCFT d=2", "DCFT d=4", "DCFT d=8", "DCFT d=12", "DCFT d=6", "DCFT d=16")


def method_color(label: str):
    """The colour of a method setting ("LoRA", "DCFT d=8", ...), the same in every figure."""
    cmap = plt.get_cmap("Dark2")
    if label in _METHOD_ORDER:
        return cmap(_METHOD_ORDER.index(label))
    return cmap(len(_METHOD_ORDER) + sum(map(ord, label)) % (8 - len(_METHOD_ORDER) % 8))


def task_color(task: str):
    return TASK_COLORS.get(task, "gray")


def time_unit(hours: list[float]) -> tuple[str, float]:
    """The unit of every time axis of a build, from our runs' training times: ("h", 1) when every
    run took an hour or more, else ("min", 60) (the paper's times are shown in the same unit)."""
    return ("h", 1.0) if hours and all(h >= 1 for h in hours) else ("min", 60.0)


def build_time_unit(runs: T.Runs) -> tuple[str, float]:
    return time_unit([r["time_h"] for r in runs.usable if r["time_h"] is not None])


def _linestyle(n_points: int) -> str:
    return "-" if n_points >= MIN_CURVE_POINTS else "none"


def _budget(runs: list[dict[str, Any]]) -> str:
    """Optimizer steps, batch size and max_len of the runs, from their result files ("40 steps x batch 16, 128 tokens")."""
    from dcft.report.results import read_result

    steps, batch, length = set(), set(), set()
    for r in runs:
        rec = read_result(r["path"]) or {}
        steps.add((rec.get("train") or {}).get("steps"))
        tc = (rec.get("config") or {}).get("train") or {}
        batch.add(tc.get("batch_size"))
        length.add(tc.get("max_len"))

    def one(vals: set) -> str:
        vals = sorted(v for v in vals if v is not None)
        return "?" if not vals else str(vals[0]) if len(vals) == 1 else f"{vals[0]}-{vals[-1]}"

    return f"{one(steps)} optimizer steps x batch {one(batch)}, max_len {one(length)}" if runs else "no runs"


def _hardware(runs: list[dict[str, Any]]) -> str:
    """GPU names, else the CPU model, of the runs ("cpu" when the result files do not say)."""
    names = sorted({str(r.get("gpu") or r.get("cpu") or r.get("device") or "?") for r in runs})
    return " / ".join(names) if names else "no runs"


def _caption(fig, model: str, runs: list[dict[str, Any]], extra: str = "", y: float = 0.0) -> None:
    """The caption under a figure, wrapped to its width: our model, hardware, budget, seeds (and
    what else the figure needs said)."""
    import textwrap

    text = (f"Ours: {model} on {_device(runs)} ({_hardware(runs)}); budget {_budget(runs)}; "
            f"{seeds_text(runs)}" + (f". {extra}" if extra else ""))
    width = int(fig.get_figwidth() * 72 / (6 * 0.52))  # characters of 6-point text across the figure
    wrapped = "\n".join(textwrap.fill(par, width) for par in text.split("\n"))
    fig.text(0.01, y, wrapped, fontsize=6, ha="left", va="top", color="dimgray")


def seeds_text(runs: list[dict[str, Any]]) -> str:
    """The seeds of a figure's runs as a reader should read them: "seed 6 (n = 1)" for one seed,
    "seeds 6, 7, 8 (n = 3)" for several."""
    seeds = sorted({r["seed"] for r in runs if r.get("seed") is not None})
    if not seeds:
        return "seeds -"
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} (n = {len(seeds)})"


def time_ratio_label(dcft_runs: list[dict[str, Any]], lora_runs: list[dict[str, Any]]) -> str | None:
    """The bar label of DCFT's time relative to LoRA's ("+12%"), only when every run of both was
    timed idle on one hardware (`dcft.conditions.comparable`); None otherwise (no ratio across
    conditions)."""
    from dcft import conditions

    both = dcft_runs + lora_runs
    if not dcft_runs or not lora_runs or not conditions.comparable(
            [r.get("time_condition", conditions.UNKNOWN) for r in both],
            [conditions.hardware(r.get("gpu"), r.get("cpu")) for r in both]):
        return None
    rel = statistics.fmean(r["time_h"] for r in dcft_runs) / statistics.fmean(r["time_h"] for r in lora_runs) - 1
    return f"{rel:+.0%}"


def spread_labels(ax, passes: int = 100) -> None:
    """Move an axis' point labels (its `annotate` texts in offset points) apart vertically until no two
    overlap on the drawn figure: of each overlapping pair, the label of the higher point goes up and the
    other down, half the overlap each, so the labels keep their points' vertical order. Call it after
    the layout is final (`tight_layout`)."""
    texts = [t for t in ax.texts if hasattr(t, "xyann")]
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    pt_per_px = 72 / fig.dpi
    anchors = [(ax.transData.transform(t.xy)[1], k) for k, t in enumerate(texts)]  # points' heights (px; xy in data)
    for _ in range(passes):
        boxes = [t.get_window_extent(renderer) for t in texts]
        moved = False
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                if not boxes[i].overlaps(boxes[j]):
                    continue
                lo, hi = (i, j) if anchors[i] <= anchors[j] else (j, i)  # the lower point's label goes down
                step = ((boxes[lo].y1 - boxes[hi].y0) / 2 + 0.5) * pt_per_px  # half the overlap, in points
                for k, sign in ((hi, 1), (lo, -1)):
                    x, y = texts[k].xyann
                    texts[k].xyann = (x, y + sign * step)
                boxes = [t.get_window_extent(renderer) for t in texts]
                moved = True
        if not moved:
            return


def _save(fig, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for p in paths:
        # No creation date in the PDF: rebuilding a figure from the same runs gives the same bytes.
        fig.savefig(p, bbox_inches="tight", metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def _series(cells: list[T.Cell], xkey: str, kind: str, which: str) -> dict[str, list[tuple[float, float, float | None]]]:
    """task -> [(x, value, std over seeds or None)] from table cells; `kind` "score" or "time_h"."""
    out: dict[str, list[tuple[float, float]]] = {}
    for c in cells:
        if c.row.method != "dcft" or c.metric == "params":
            continue
        if (c.metric == "time_h") != (kind == "time_h"):
            continue
        v = c.ours if which == "ours" else c.paper
        if v is None:
            continue
        x = getattr(c.row, xkey)
        out.setdefault(c.task, []).append((x, v, c.std if which == "ours" else None))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in out.items()}


def _avg_series(cells: list[T.Cell], table: T.PaperTable, xkey: str, kind: str, which: str):
    """Average over the tasks, the tables' way; for ours only where every task has a run."""
    pts = []
    for row in table.rows:
        if row.method != "dcft":
            continue
        if which == "paper":
            c = table.paper(row.model, row.setting, "avg", kind)
            v = T.paper_value(c)
            if v is None:
                scores = T.task_scores(cells, row, kind, table, "paper")
                v = statistics.fmean(scores.values()) if scores else None
        else:
            scores = T.task_scores(cells, row, kind, table, "ours")
            v = statistics.fmean(scores.values()) if scores else None
        if v is not None:
            pts.append((getattr(row, xkey), v))
    return sorted(pts)


def ablation_figure(number: int, runs: T.Runs, model: str | None, out: Path, paper_dir=T.PAPER_DIR,
                    unit: tuple[str, float] | None = None) -> list[Path]:
    """Table 4 (x = kernel) or Table 5 (x = stride): score and time, paper | ours."""
    table = T.load_paper(number, paper_dir)
    cells, _ = T.build_cells(table, runs, model)
    xkey = "kernel" if number == 4 else "stride"
    tasks = table.tasks()
    ours_model = model or table.models[0]
    used = [r for r in runs.usable if r["model"] == ours_model and any(row.matches(r) for row in table.rows)]
    unit, factor = unit or build_time_unit(runs)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 2, figsize=(PAPER_WIDTH_IN, 4.6), sharex=True)
        for col, which in enumerate(("paper", "ours")):
            for rowi, kind in enumerate(("score", "time_h")):
                ax = axes[rowi, col]
                series = _series(cells, xkey, kind, which)
                f = factor if kind == "time_h" else 1.0
                for task in tasks:
                    pts = series.get(task, [])
                    if pts:
                        xs, ys, errs = zip(*pts)
                        ax.errorbar(xs, [y * f for y in ys], yerr=[(e or 0.0) * f for e in errs] if any(errs) else None,
                                    marker="o", linestyle=_linestyle(len(pts)), color=task_color(task), capsize=2,
                                    label=T.TASK_LABEL.get(task, task))
                avg = _avg_series(cells, table, xkey, kind, which)
                if avg:
                    ax.plot([x for x, _ in avg], [y * f for _, y in avg], marker="s", color="black", linewidth=2.0,
                            linestyle=_linestyle(len(avg)), label="Avg")
                full = [r for r in table.rows if r.method == "full"]
                if kind == "score" and full:  # Table 4's Full FT row, as a reference line
                    if which == "paper":
                        ff = T.paper_value(table.paper(full[0].model, full[0].setting, "avg", "score"))
                    else:
                        scores = T.task_scores(cells, full[0], "score", table, "ours")
                        ff = statistics.fmean(scores.values()) if scores else None
                    if ff is not None:
                        ax.axhline(ff, color="gray", linestyle="--", linewidth=1.0, label="Full FT (Avg)")
                if not any(series.values()):
                    ax.text(0.5, 0.5, "no completed runs", transform=ax.transAxes, ha="center", va="center",
                            color="gray")
                ax.set_ylabel("dev score (×100)" if kind == "score" else f"training time ({unit})")
                if rowi == 1:
                    ax.set_xlabel("kernel size d (stride = d)" if number == 4 else "stride s (kernel 8)")
                label = (f"paper: {T.MODEL_LABEL.get(table.models[0], table.models[0])}, "
                         f"{T.PAPER_HARDWARE.get(table.models[0], '')}" if which == "paper"
                         else f"ours: {ours_model}, {_device(used)}")
                ax.set_title(("Score — " if kind == "score" else "Time — ") + label)
                xs = sorted({getattr(r, xkey) for r in table.rows if r.method == "dcft"})
                ax.set_xticks(xs)
                if number == 5:
                    ax.set_xscale("log", base=2)
                    ax.set_xticks(xs, [str(x) for x in xs])
                ax.grid(alpha=0.3)
        handles, labels = {}, []
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
        fig.suptitle(f"Table {number}: {'kernel size' if number == 4 else 'stride'} — score and training time",
                     fontsize=9)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        _caption(fig, ours_model, [r for r in used if r["task"] in tasks],
                 "Paper: its Table " + str(number) + f"; times in {unit}; error bars: std over seeds", y=-0.045)
        stem = ("table4_kernel" if number == 4 else "table5_stride") + (f"_{model}" if model else "")
        return _save(fig, out, stem)


def _device(runs: list[dict[str, Any]]) -> str:
    devs = sorted({str(r["gpu"] or r["device"] or "?") for r in runs})
    return "/".join(devs) if devs else "no runs"


def _dcft_std(r: dict[str, Any], kernels: tuple[int, ...]) -> bool:
    """DCFT with one of `kernels`, stride = kernel, ALL targets (what Figures 2 and 3 compare)."""
    return (r["method"] == "dcft" and r["kernel"] in kernels and r["stride"] == r["kernel"]
            and (r["targets"] or "all") == "all")


def _label(r: dict[str, Any]) -> str:
    return f"DCFT d={r['kernel']}" if r["method"] == "dcft" else "LoRA"


def selected(runs: T.Runs, model: str, tasks: tuple[str, ...] | list[str], kernels: tuple[int, ...]) -> list[dict[str, Any]]:
    """The runs Figures 2 and 3 show: per task, LoRA's and each DCFT kernel's runs as a table cell takes
    them (`dcft.report.selection.choose`: one condition, the rate chosen on the tuning seed, every seed of it)."""
    from dcft.report.selection import choose

    out = []
    for task in tasks:
        column = [(_label(r), r) for r in runs.usable if r["model"] == model and r["task"] == task
                  and (r["method"] == "lora" or _dcft_std(r, kernels))]
        for label in sorted({lab for lab, _ in column}):
            out += choose([r for lab, r in column if lab == label], context=column).runs
    return out


def figure2(runs: T.Runs, model: str | None, out: Path, kernels: tuple[int, ...] = FIG_KERNELS,
            unit: tuple[str, float] | None = None) -> list[Path]:
    """Total training time of DCFT (each of `kernels`) and LoRA per task (grouped bars, mean over
    the seeds of each setting's selected runs (`selected`), error bar = std)."""
    model = model or "deberta-v3-base"
    sel = [r for r in selected(runs, model, FIG2_TASKS, kernels) if r["time_h"] is not None]
    if not any(r["method"] == "lora" for r in sel) or not any(r["method"] == "dcft" for r in sel):
        print(f"figure 2 skipped: needs completed LoRA and DCFT runs of {model} on {', '.join(FIG2_TASKS)}")
        return []
    groups = sorted({_label(r) for r in sel}, key=lambda s: (s != "LoRA", len(s), s))
    tasks = [t for t in FIG2_TASKS if any(r["task"] == t for r in sel)]
    hours = {(g, t): [r["time_h"] for r in sel if _label(r) == g and r["task"] == t] for g in groups for t in tasks}
    unit, factor = unit or build_time_unit(runs)
    ratios: list[str | None] = []
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.8))
        width = 0.8 / len(groups)
        for gi, g in enumerate(groups):
            xs, ys, errs = [], [], []
            for ti, t in enumerate(tasks):
                v = hours[(g, t)]
                if not v:
                    continue
                xs.append(ti + (gi - (len(groups) - 1) / 2) * width)
                ys.append(statistics.fmean(v) * factor)
                errs.append(statistics.stdev(v) * factor if len(v) > 1 else 0.0)
            bars = ax.bar(xs, ys, width, yerr=errs if any(errs) else None, capsize=2, color=method_color(g), label=g)
            if g != "LoRA":
                for b, t in zip(bars, [t for t in tasks if hours[(g, t)]]):
                    of = lambda label: [r for r in sel if _label(r) == label and r["task"] == t]  # noqa: E731
                    rel = time_ratio_label(of(g), of("LoRA"))
                    if of("LoRA"):
                        ratios.append(rel)
                        ax.annotate(rel or "n/c", (b.get_x() + b.get_width() / 2, b.get_height()),
                                    ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(tasks)), [T.TASK_LABEL[t] for t in tasks])
        ax.set_ylabel(f"total training time ({unit})")
        ax.set_title(f"Training time, DCFT vs LoRA ({model}, {_device(sel)})")
        ax.margins(y=0.12)
        ax.legend(frameon=False, ncol=len(groups), loc="upper center", bbox_to_anchor=(0.5, -0.1))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        from dcft import conditions

        nc = ("\nn/c: not comparable, no ratio shown: the runs were not all timed on an idle machine on one "
              f"hardware ({conditions.RULE}; or the result files record no load)." if None in ratios else "")
        _caption(fig, model, sel, "Labels: DCFT time relative to LoRA; bars: mean over seeds, error bar: std." + nc +
                 "\nPaper (Fig. 2, 2080 Ti, batch 32): DCFT slower than LoRA on the small tasks, 17.36% faster on QNLI.")
        return _save(fig, out, "figure2_time" + (f"_{model}" if model != "deberta-v3-base" else ""))


def _loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, task loss) of the run's training, from `log.jsonl` (the task loss without a method's
    regulariser, so DCFT and LoRA compare; older logs have only `loss`). A `start` record resumed at step R
    discards what an interrupted attempt logged after R (the resumed run redoes those steps), so a
    resumed run gives one curve, not two overlapping ones."""
    path = run_dir / "log.jsonl"
    pts: dict[int, float] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("type") == "start":
                resumed_at = int(rec.get("resumed_at") or 0)
                pts = {k: v for k, v in pts.items() if k <= resumed_at}
            elif rec.get("type") == "train" and rec.get("task_loss", rec.get("loss")) is not None:
                pts[int(rec["step"])] = float(rec.get("task_loss", rec.get("loss")))  # older logs: loss only
    return sorted(pts.items())


def _has_task_loss(run_dir: Path) -> bool:
    """Whether the run's log.jsonl separates the task loss (logs before the split have `loss` only)."""
    path = run_dir / "log.jsonl"
    return path.exists() and '"task_loss"' in path.read_text(encoding="utf-8")


def _history(run_dir: Path) -> list[tuple[int, float]]:
    """(step, dev score) of every evaluation; with a held-out slice (`data.holdout`) an evaluation's
    `score` is the held-out one, so the dev key is read instead (`dcft.report.results.dev_score_key`)."""
    from dcft.report.results import dev_score_key, read_result

    rec = read_result(run_dir) or {}
    hist = (rec.get("metrics") or {}).get("history") or []
    cfg = rec.get("config") or {}
    key = dev_score_key((cfg.get("task") or {}).get("name"), (cfg.get("data") or {}).get("holdout"))
    return [(int(h["step"]), float(h[key])) for h in hist if h.get(key) is not None]


def figure3(runs: T.Runs, model: str | None, out: Path, task: str = "sst2",
            kernels: tuple[int, ...] = FIG_KERNELS) -> list[Path]:
    """Dev score and training loss against the step, DCFT (each kernel) and LoRA, on `task`;
    the lowest seed of each setting's selected runs (`selected`)."""
    model = model or "deberta-v3-base"
    sel = selected(runs, model, (task,), kernels)
    picked: dict[str, dict[str, Any]] = {}
    for r in sorted(sel, key=lambda r: (r["seed"] is None, r["seed"] or 0, r["run"])):
        picked.setdefault(_label(r), r)
    if "LoRA" not in picked or len(picked) < 2:
        print(f"figure 3 skipped: needs completed LoRA and DCFT runs of {model} on {task}")
        return []
    order = sorted(picked, key=lambda s: (s != "LoRA", len(s), s))
    scale = T.scale(task)
    with plt.rc_context(STYLE):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(PAPER_WIDTH_IN, 2.5))
        for lab in order:
            r = picked[lab]
            hist = _history(Path(r["path"]))
            if hist:
                a1.plot([s for s, _ in hist], [v * scale for _, v in hist], marker="o", markersize=2.5,
                        linestyle=_linestyle(len(hist)), color=method_color(lab), label=f"{lab} (seed {r['seed']})")
            loss = _loss_curve(Path(r["path"]))
            if loss:
                a2.plot([s for s, _ in loss], [v for _, v in loss], marker="o" if len(loss) < MIN_CURVE_POINTS else None,
                        linestyle=_linestyle(len(loss)), color=method_color(lab), label=f"{lab} (seed {r['seed']})")
        name = SCORE_NAME.get(task, "accuracy")
        a1.set_ylabel(f"dev {name} (×100)")
        a1.set_title(f"Dev {name}, {T.TASK_LABEL.get(task, task)}")
        split = all(_has_task_loss(Path(picked[lab]["path"])) for lab in order)
        a2.set_ylabel("training task loss" if split else "training loss")
        a2.set_title(f"Training loss, {T.TASK_LABEL.get(task, task)}")
        for ax in (a1, a2):
            ax.set_xlabel("optimizer step")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(frameon=False)
            else:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
        fig.suptitle(f"DCFT vs LoRA on {T.TASK_LABEL.get(task, task)} ({model}); paper: Figure 3", fontsize=9)
        fig.tight_layout()
        _caption(fig, model, list(picked.values()),
                 "Task loss: without DCFT's orthogonal regulariser, comparable with LoRA's" if split else
                 "These logs predate the task-loss split: DCFT's training loss includes its orthogonal regulariser")
        suffix = (f"_{model}" if model != "deberta-v3-base" else "") + (f"_{task}" if task != "sst2" else "")
        return _save(fig, out, "figure3_curves" + suffix)


def write_figures(runs_dir: str | Path = "results/runs", out: str | Path = "results/figures", model: str | None = None,
                  task: str = "sst2", paper_dir: str | Path = T.PAPER_DIR,
                  kernels: tuple[int, ...] = FIG_KERNELS) -> list[Path]:
    out = Path(out)
    runs = T.load_runs(runs_dir)
    unit = build_time_unit(runs)  # one time unit for every figure of the build
    paths = ablation_figure(4, runs, model, out, paper_dir, unit) + ablation_figure(5, runs, model, out, paper_dir, unit)
    paths += figure2(runs, model, out, kernels, unit)
    paths += figure3(runs, model, out, task, kernels)
    for p in paths:
        print(f"wrote {p}")
    return paths


def main(argv: list[str] | None = None) -> None:
    from dcft.harness.console import help_text

    ap = argparse.ArgumentParser(prog="python -m dcft.report.figures", description=help_text(__doc__))
    ap.add_argument("--runs", default="results/runs", help="folder searched for result.json files")
    ap.add_argument("--out", default="results/figures", help="output folder (default results/figures)")
    ap.add_argument("--model", default=None, help="our model (default: the paper's, deberta-v3-base)")
    ap.add_argument("--task", default="sst2", help="task of the Figure 3 curves (paper: sst2)")
    ap.add_argument("--kernels", default="2,8", help="DCFT kernels compared with LoRA in Figures 2 and 3 (default 2,8)")
    ap.add_argument("--paper", default=str(T.PAPER_DIR), help="folder with the paper's table<N>.csv")
    args = ap.parse_args(argv)
    kernels = tuple(int(k) for k in args.kernels.split(",") if k)
    write_figures(args.runs, args.out, args.model, args.task, args.paper, kernels)


if __name__ == "__main__":
    main(sys.argv[1:])
