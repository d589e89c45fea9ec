"""`dcft.report.figures`: every figure is produced from fixture result files (PNG and PDF, non-empty)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dcft.report import figures as F

METRIC = {"cola": "validation/matthews_correlation", "stsb": "validation/pearson"}


def _run(root: Path, task: str, method: str, *, kernel: int | None = None, stride: int | None = None,
         seed: int = 6, score: float = 0.8, time_s: float = 600.0, model: str = "minilm") -> None:
    name = (f"kernel={kernel},seed={seed},stride={'null' if stride is None else stride},targets=all"
            if method == "dcft" else f"seed={seed}")
    d = root / model / task / method / name
    d.mkdir(parents=True, exist_ok=True)
    metric = METRIC.get(task, "validation/accuracy")
    hist = [{"step": s, "epoch": s / 100, "score": score - 0.2 * math.exp(-s / 100)} for s in range(50, 301, 50)]
    for h in hist:
        h[metric] = h["score"]
    mcfg = {"name": method, **({"kernel": kernel, "stride": stride, "targets": "all"} if method == "dcft" else {})}
    rec = {"status": "completed", "run_dir": str(d),
           "choices": {"model": model, "task": task, "method": method, "preset": "authors", "debug": None},
           "config": {"model": {"name": model}, "task": {"name": task}, "method": mcfg, "seed": seed},
           "device": "cpu", "environment": {"host": "vm"}, "params": {"method": 6912},
           "metrics": {"best": {"score": score, "step": 300, metric: score}, "final": hist[-1], "history": hist},
           "train": {"train_time_s": time_s}, "finished_at": "2026-01-01T00:00:00"}
    (d / "result.json").write_text(json.dumps(rec), encoding="utf-8")
    with (d / "log.jsonl").open("w", encoding="utf-8") as f:
        for s in range(10, 301, 10):
            f.write(json.dumps({"type": "train", "step": s, "loss": 0.7 * math.exp(-s / 150) + 0.1}) + "\n")
        f.write(json.dumps({"type": "eval", "step": 300, "score": score}) + "\n")


@pytest.fixture
def fig_runs(tmp_path: Path) -> Path:
    return write_fig_runs(tmp_path / "runs")


def write_fig_runs(root: Path) -> Path:
    """minilm runs for Tables 4 and 5 (DCFT kernels and strides, full FT) and LoRA beside DCFT for
    Figures 2 and 3 (two LoRA seeds)."""
    for i, task in enumerate(("sst2", "cola", "qnli", "rte", "mrpc", "stsb")):
        for k in (2, 4, 6, 8, 12):
            _run(root, task, "dcft", kernel=k, score=0.70 + 0.01 * i + 0.002 * k, time_s=600 + 3000 / k)
        _run(root, task, "full", score=0.75, time_s=900)
    for task in ("cola", "mrpc", "stsb", "rte"):
        for s in (1, 2, 4):
            _run(root, task, "dcft", kernel=8, stride=s, score=0.7, time_s=600 + 800 / s)
    for task in ("cola", "rte", "mrpc", "qnli", "sst2"):
        _run(root, task, "lora", score=0.72, time_s=700)
        _run(root, task, "lora", seed=7, score=0.73, time_s=720)
    return root


def test_every_figure_from_fixture_runs(fig_runs: Path, tmp_path: Path):
    out = tmp_path / "figures"
    paths = F.write_figures(fig_runs, out, model="minilm")
    stems = ("table4_kernel_minilm", "table5_stride_minilm", "figure2_time_minilm", "figure3_curves_minilm")
    assert sorted(p.name for p in paths) == sorted(f"{s}.{e}" for s in stems for e in ("png", "pdf"))
    for p in paths:
        assert p.exists() and p.stat().st_size > 5000, p
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")


def test_rebuilding_gives_the_same_bytes(fig_runs: Path, tmp_path: Path, monkeypatch):
    """Committed figures do not change when rebuilt from the same runs (no creation date in the PDF)."""
    built = []
    for i, epoch in enumerate(("1600000000", "1700000000")):  # two builds at different clock times
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
        built.append({p.name: p.read_bytes() for p in F.write_figures(fig_runs, tmp_path / str(i), model="minilm")})
    assert built[0] == built[1]


def test_without_runs_only_the_paper_side_is_drawn(tmp_path: Path, capsys):
    paths = F.write_figures(tmp_path / "no-runs", tmp_path / "figures")
    assert sorted(p.name for p in paths) == ["table4_kernel.pdf", "table4_kernel.png", "table5_stride.pdf",
                                             "table5_stride.png"]
    text = capsys.readouterr().out
    assert "figure 2 skipped" in text and "figure 3 skipped" in text


def test_figure_helpers_read_history_and_log(fig_runs: Path):
    run = fig_runs / "minilm" / "sst2" / "lora" / "seed=6"
    loss = F._loss_curve(run)
    assert len(loss) == 30 and loss[0][0] == 10  # train lines only, eval lines ignored
    hist = F._history(run)
    assert [s for s, _ in hist] == [50, 100, 150, 200, 250, 300]


def test_loss_curve_of_a_resumed_run_is_one_curve(tmp_path: Path):
    """Attempt 1 logs steps 1-5 and dies after its step-4 checkpoint; attempt 2 resumes at 4 and
    redoes step 5 with another loss: the curve keeps attempt 2's step 5, once."""
    lines = [{"type": "start", "resumed_at": 0}] + [{"type": "train", "step": s, "loss": 1.0} for s in range(1, 6)]
    lines += [{"type": "start", "resumed_at": 4}] + [{"type": "train", "step": s, "loss": 0.5} for s in (5, 6)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    assert F._loss_curve(tmp_path) == [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (5, 0.5), (6, 0.5)]
