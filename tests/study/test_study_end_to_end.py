"""A whole study through the real launcher: `python -m dcft.study run` on tiny-bert and two learnable
GLUE-format tasks written here, 2 tasks x 2 core settings x a 3-rate grid, seeds 6 and 7, the budget check
at twice the steps, two runs side by side; then nothing is left, the report has every cell, and a relaunch runs nothing."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import yaml

from dcft.data.toy import write_learnable_rte
from dcft.study.__main__ import main
from dcft.study.planner import load_runs, planned_runs
from dcft.study.spec import load


def write_learnable_sst2(root: Path, n: int = 192, seed: int = 0) -> None:
    """SST-2 layout whose label is the repeated word: "good ..." -> 1, "bad ..." -> 0."""
    rng = random.Random(seed)
    d = root / "SST-2"
    d.mkdir(parents=True)
    for split in ("train", "dev"):
        lines = ["sentence\tlabel"]
        for _ in range(n if split == "train" else 64):
            pos = rng.random() < 0.5
            lines.append(" ".join(["good" if pos else "bad"] * rng.randint(2, 5)) + f"\t{int(pos)}")
        (d / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow  # about 30 tiny runs through run.py -m
def test_a_tiny_study_runs_to_its_report_and_resumes_to_nothing(tmp_path, capsys):
    glue = write_learnable_rte(tmp_path / "glue")
    write_learnable_sst2(tmp_path / "glue")
    budget = {"budgets": [20], "batch_size": 16, "max_len": 48, "eval_steps": 10, "holdout": 0.25}
    study = {
        "name": "tiny", "title": "tiny", "output_root": str(tmp_path / "runs"), "report_dir": str(tmp_path / "out"),
        "run": {"model": "tiny-bert", "preset": "none", "data.glue_dir": str(glue), "logger": "none",
                "train.progress": False},
        "tasks": {"rte": {"metric": "accuracy", **budget}, "sst2": {"metric": "accuracy", **budget}},
        "settings": {"lora": {"title": "LoRA", "method": "lora"},
                     "dcft8": {"title": "DCFT k8", "method": "dcft", "set": {"kernel": 8}}},
        "tuning": {"axis": "train.lr", "step": 2, "either_side": 1, "centre": "source", "recentre": "previous_budget",
                   "extend": 0, "seed": 6, "select_on": "holdout"},
        "seeds": [6, 7],
        "groups": {"core": {"settings": ["lora", "dcft8"], "tasks": ["rte", "sst2"], "rate": "tuned"}},
        "budget_check": {"gate": "best_core", "factor": 2, "rule": "interval_contains_zero"},
        "claims": [{"name": "k8_over_lora", "kind": "better", "settings": ["dcft8", "lora"], "tasks": ["rte", "sst2"]}],
        "report": {"table1": {"groups": ["core"], "title": "tiny"}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    s = load(path)
    first = planned_runs(s, load_runs(s))
    assert len(first) == 2 * 2 * 3  # tasks x settings x grid, tuning seed only
    assert main(["run", str(path), "--jobs", "2"]) == 0  # two side by side, through Hydra's joblib launcher
    runs = load_runs(s)
    assert planned_runs(s, runs) == []
    # per task: 2 settings x 3 rates (seed 6), seed 7 of each at its rate, the gate at 40 steps x 2 seeds
    assert len(runs) == 2 * (6 + 2 + 2)
    rows = list(csv.reader((tmp_path / "out" / "tables" / "table1.csv").open(encoding="utf-8")))
    assert rows[0] == ["setting", "#Params", "rte", "sst2"]
    assert all("±" in cell and "(n=" not in cell for row in rows[1:] for cell in row[2:]), rows
    claims = list(csv.DictReader((tmp_path / "out" / "tables" / "claims.csv").open(encoding="utf-8")))
    assert [c["seeds"] for c in claims] == ["2 / 2", "2 / 2"]
    capsys.readouterr()
    assert main(["run", str(path)]) == 0  # resumes to nothing and rebuilds the report
    assert "nothing left to run" in capsys.readouterr().out
    assert len(load_runs(s)) == len(runs)
