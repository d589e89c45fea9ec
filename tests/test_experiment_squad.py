"""SQuAD v1.1 and v2.0 end to end through the same loop, results and methods as GLUE."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import ROOT, compose_cfg
from dcft.harness.experiment import run

METHODS = sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml"))
PLACES = ["Kell", "Arden", "Moss", "Tarn", "Brook", "Fane"]


def write_squad(root: Path, version: str, n: int = 24, seed: int = 0) -> Path:
    """Official-format SQuAD files: short paragraphs, one question each; v2 adds unanswerable ones."""
    rng = random.Random(seed)
    names = {"v1": ("train-v1.1.json", "dev-v1.1.json"), "v2": ("train-v2.0.json", "dev-v2.0.json")}[version]
    root.mkdir(parents=True, exist_ok=True)
    for fname in names:
        data = []
        for i in range(n):
            place = rng.choice(PLACES)
            ctx = f"The old town of {place} sits on the east bank of the river."
            qa = {"id": f"{fname[:3]}{i}", "question": "Which town sits on the bank?",
                  "answers": [{"text": place, "answer_start": ctx.index(place)}]}
            if version == "v2":
                qa["is_impossible"] = False
                if i % 3 == 0:
                    qa = {"id": qa["id"], "question": "Who built the bridge?", "answers": [], "is_impossible": True}
            data.append({"title": f"t{i}", "paragraphs": [{"context": ctx, "qas": [qa]}]})
        (root / fname).write_text(json.dumps({"version": version, "data": data}), encoding="utf-8")
    return root


SMOKE = ["model=tiny-bert", "debug=smoke", "train.max_len=48", "task.doc_stride=16", "train.progress=false"]


@pytest.mark.parametrize("method", METHODS)
def test_squad_v2_runs_with_every_method(method, tmp_path):
    squad = write_squad(tmp_path / "squad", "v2")
    rec = run(compose_cfg(SMOKE + ["task=squad_v2", f"method={method}", f"data.squad_dir={squad}"]), tmp_path / "run")
    assert rec["status"] == "completed"
    best = rec["metrics"]["best"]
    for key in ("validation/exact", "validation/f1", "validation/HasAns_f1", "validation/NoAns_f1",
                "validation/best_f1", "validation/best_f1_thresh"):
        assert key in best, key
    assert 0.0 <= best["validation/f1"] <= 100.0
    preds = json.loads((tmp_path / "run" / "predictions.json").read_text())
    odds = json.loads((tmp_path / "run" / "null_odds.json").read_text())
    assert set(preds) == set(odds) and len(preds) == 24  # every dev question (smoke keeps up to 32)
    assert all(preds[q] == "" for q in preds if odds[q] > 0.0)  # null answer wherever null wins at threshold 0


def test_squad_v1_run_writes_em_f1_and_predictions(tmp_path):
    squad = write_squad(tmp_path / "squad", "v1")
    rec = run(compose_cfg(SMOKE + ["task=squad", "method=dcft", "kernel=8", f"data.squad_dir={squad}"]),
              tmp_path / "run")
    best = rec["metrics"]["best"]
    assert {"validation/exact_match", "validation/f1"} <= set(best)
    assert rec["metrics"]["best"]["score"] == best["validation/f1"]
    assert len(json.loads((tmp_path / "run" / "predictions.json").read_text())) == 24
