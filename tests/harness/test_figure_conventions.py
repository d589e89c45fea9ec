"""Figures a reader trusts (the problem: "figures change a task's colour from one figure to the next,
mix hours and minutes, and draw a two-point curve"): one colour per task and per method across
figures, one time unit, markers instead of a line for fewer than 3 points, error bars where there are
seeds, a caption naming model, hardware and budget, Figure 3 on the task loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.colors import to_rgba

import matplotlib.pyplot as plt

from dcft.report import figures as F
from tables.test_figures import _run, write_fig_runs


def _build(root: Path, out: Path) -> dict:
    """Every figure object of one build, by stem (saving skipped)."""
    figs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F, "_save", lambda fig, out, stem: figs.setdefault(stem, fig) and [])
        F.write_figures(root, out, model="minilm")
    return figs


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """The runs of tests/tables/test_figures.py's fixture (Tables 4 and 5, LoRA with two seeds), plus
    a second seed of DCFT d=2 on CoLA (an error bar)."""
    root = write_fig_runs(tmp_path_factory.mktemp("fig") / "runs")
    _run(root, "cola", "dcft", kernel=2, seed=7, score=0.90, time_s=2100)
    return root


@pytest.fixture(scope="module")
def drawn(runs_root, tmp_path_factory):
    figs = _build(runs_root, tmp_path_factory.mktemp("out"))
    yield figs
    plt.close("all")


def _line_colors(fig) -> dict[str, tuple]:
    out = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                out.setdefault(line.get_label(), to_rgba(line.get_color()))
        for c in ax.containers:  # errorbar containers carry the label
            lab = c.get_label()
            if lab and not lab.startswith("_") and hasattr(c, "lines") and c.lines and c.lines[0] is not None:
                out.setdefault(lab, to_rgba(c.lines[0].get_color()))
    return out


def test_a_task_keeps_its_colour_across_figures(drawn):
    t4, t5 = _line_colors(drawn["table4_kernel_minilm"]), _line_colors(drawn["table5_stride_minilm"])
    shared = set(t4) & set(t5) - {"Avg", "Full FT (Avg)"}
    assert {"CoLA", "RTE", "MRPC", "STS-B"} <= shared
    for lab in shared:
        assert t4[lab] == t5[lab], lab
    assert len({t4[k] for k in t4 if k not in ("Avg", "Full FT (Avg)")}) == len([k for k in t4 if "Avg" not in k])


def test_a_method_keeps_its_colour_across_figures(drawn):
    bars = {}
    for ax in drawn["figure2_time_minilm"].axes:
        for c in ax.containers:
            if hasattr(c, "patches") and c.patches:
                bars[c.get_label()] = to_rgba(c.patches[0].get_facecolor())
    curves = {k.split(" (seed")[0]: v for k, v in _line_colors(drawn["figure3_curves_minilm"]).items()}
    assert "LoRA" in bars and "LoRA" in curves and bars["LoRA"] == curves["LoRA"]
    dcft = [k for k in bars if k.startswith("DCFT")]
    assert dcft and all(bars[k] == curves[k] for k in dcft if k in curves)
    assert len(set(bars.values())) == len(bars)


def test_one_time_unit_in_every_figure(drawn):
    """Fixture runs take 10-30 minutes: every time axis says minutes (the old figure 2 said min,
    the ablation plots hours)."""
    labels = [ax.get_ylabel() for f in drawn.values() for ax in f.axes if "time" in ax.get_ylabel()]
    assert labels and all(lab.endswith("(min)") for lab in labels), labels
    assert F.time_unit([0.2, 1.5]) == ("min", 60.0) and F.time_unit([1.2, 1.5]) == ("h", 1.0)


def test_two_points_are_markers_not_a_curve(tmp_path):
    """RTE at strides 4 and 8 (two points) is markers; CoLA at strides 1, 2, 4, 8 is a line."""
    root = tmp_path / "runs"
    for s in (4, 8):
        _run(root, "rte", "dcft", kernel=8, stride=s, score=0.6, time_s=600)
    for s in (1, 2, 4, 8):
        _run(root, "cola", "dcft", kernel=8, stride=s, score=0.6, time_s=600)
    ax = _build(root, tmp_path / "out")["table5_stride_minilm"].axes[1]  # ours, score
    plt.close("all")
    styles = {c.get_label(): (len(c.lines[0].get_xdata()), c.lines[0].get_linestyle())
              for c in ax.containers if c.lines and c.lines[0] is not None}
    assert styles["RTE"] == (2, "None") and styles["CoLA"] == (4, "-")


def test_error_bars_where_there_are_seeds(drawn):
    ours_score = drawn["table4_kernel_minilm"].axes[1]
    cola = [c for c in ours_score.containers if c.get_label() == "CoLA"][0]
    assert cola.has_yerr
    segs = cola.lines[2][0].get_segments()
    assert len(segs) == 5  # one bar per kernel; kernel 2 has two seeds: 0.714 and 0.90 (x100)
    lens = sorted(abs(s[1][1] - s[0][1]) for s in segs)
    assert lens[-1] == pytest.approx(2 * 13.152186, rel=1e-4) and lens[0] == 0.0  # 2 x sample std of 71.4, 90.0


def test_every_figure_has_a_caption_with_model_hardware_budget(drawn):
    for stem, fig in drawn.items():
        text = " ".join(t.get_text() for t in fig.texts)
        assert "Ours: minilm on cpu" in text and "budget" in text, (stem, text)


def test_figure3_uses_the_task_loss(tmp_path):
    lines = [{"type": "train", "step": 1, "loss": 1.5, "task_loss": 0.7, "reg_loss": 0.8},
             {"type": "train", "step": 2, "loss": 1.4, "task_loss": 0.6, "reg_loss": 0.8}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert F._loss_curve(tmp_path) == [(1, 0.7), (2, 0.6)]
    assert F._has_task_loss(tmp_path)


def _label_boxes(ax):
    renderer = ax.figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in ax.texts]


def test_spread_labels_separates_overlapping_point_labels_and_keeps_their_order():
    """Five labels of points 0.01 apart overlap as drawn (checked first, so the test can fail);
    after `spread_labels` no two overlap, the higher point's label is still the higher one, and each
    label still points at its own point. Catches: labels left overlapping, a lower point's label
    pushed above a higher one's, a label detached from its point."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ys = [84.50, 84.51, 84.52, 84.53, 84.54]
    ax.plot([1e4] * 5, ys, "o")
    ax.set_ylim(80, 90)
    for i, y in enumerate(ys):
        ax.annotate(f"setting {i}", (1e4, y), fontsize=6, xytext=(4, 0), textcoords="offset points")
    fig.tight_layout()
    before = _label_boxes(ax)
    assert any(a.overlaps(b) for i, a in enumerate(before) for b in before[i + 1:])
    F.spread_labels(ax)
    after = _label_boxes(ax)
    assert not any(a.overlaps(b) for i, a in enumerate(after) for b in after[i + 1:])
    centres = [(b.y0 + b.y1) / 2 for b in after]
    assert centres == sorted(centres)  # the labels keep the points' vertical order
    assert [t.xy for t in ax.texts] == [(1e4, y) for y in ys]
    plt.close(fig)


def test_spread_labels_leaves_separate_labels_where_they_are():
    """Two labels far apart are not moved (a spread that shifts everything would fail)."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_ylim(0, 10)
    for y in (1, 9):
        ax.annotate("x", (0.5, y), fontsize=6, xytext=(4, 0), textcoords="offset points")
    F.spread_labels(ax)
    assert [t.xyann for t in ax.texts] == [(4, 0), (4, 0)]
    plt.close(fig)


def test_figure3_curve_of_a_held_out_run_is_its_dev_score(tmp_path):
    """A run tuned on a held-out slice logs the held-out score as each evaluation's `score`; Figure 3's
    curve is the dev score (here 0.70, 0.80 against held-out 0.90, 0.95). Without a holdout: `score`."""
    hist = [{"step": 100, "score": 0.90, "holdout/accuracy": 0.90, "validation/accuracy": 0.70},
            {"step": 200, "score": 0.95, "holdout/accuracy": 0.95, "validation/accuracy": 0.80}]
    for holdout, want in ((0.01, [(100, 0.70), (200, 0.80)]), (0.0, [(100, 0.90), (200, 0.95)])):
        d = tmp_path / str(holdout)
        d.mkdir()
        (d / "result.json").write_text(json.dumps({"status": "completed", "config": {
            "task": {"name": "sst2"}, "data": {"holdout": holdout}}, "metrics": {"history": hist}}))
        assert F._history(d) == want
