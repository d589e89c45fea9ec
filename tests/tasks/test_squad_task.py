"""SquadTask end to end on a tiny fixture: load with the byte tokenizer, a tiny random QA model
forward over the evaluation batches, compute_metrics keys and files, and exact scores from
oracle logits; the offline re-scoring tool reproduces the task's metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import tiny_model
from dcft.metrics.squad import main as rescore
from dcft.harness.models import byte_tokenizer
from dcft.tasks.squad import SquadTask

MAX_LEN, STRIDE = 64, 16
LONG = ("The river flows north through the valley for many miles before it meets the sea. "
        "Fishermen there catch salmon in the autumn, and the old town of Kell sits on its east bank.")


def official(version: str) -> dict:
    v2 = version == "v2"

    def qa(qid, q, text=None, impossible=False):
        ctx = LONG
        answers = [] if text is None else [{"text": text, "answer_start": ctx.index(text)}]
        out = {"id": qid, "question": q, "answers": answers}
        if v2:
            out["is_impossible"] = impossible
        return out

    qas = [qa("q1", "Where does it flow?", "north"), qa("q2", "What fish?", "salmon"),
           qa("q3", "Which town?", "Kell")]
    if v2:
        qas.append(qa("q4", "Who built the bridge?", impossible=True))
    return {"data": [{"title": "River", "paragraphs": [{"context": LONG, "qas": qas}]}]}


@pytest.fixture(params=["v1", "v2"])
def setup(request, tmp_path):
    version = request.param
    names = {"v1": ("train-v1.1.json", "dev-v1.1.json"), "v2": ("train-v2.0.json", "dev-v2.0.json")}[version]
    for name in names:
        (tmp_path / name).write_text(json.dumps(official(version)))
    task = SquadTask(version=version, squad_dir=str(tmp_path), doc_stride=STRIDE, n_best=5, max_answer_length=10)
    data = task.load(byte_tokenizer(), MAX_LEN)
    return task, data, tmp_path


def run_model(model, task, data, batch_size=2):
    """What the loop does: forward per batch, then concatenate batches of different widths."""
    parts = {"start_logits": [], "end_logits": []}
    loader = DataLoader(data.evals["validation"], batch_size=batch_size, collate_fn=data.collate)
    with torch.no_grad():
        for batch in loader:
            for k, v in task.outputs(model(**task.model_inputs(batch))).items():
                parts[k].append(v.numpy())
    width = max(p.shape[1] for p in parts["start_logits"])
    return {k: np.concatenate([np.pad(p, [(0, 0), (0, width - p.shape[1])], constant_values=-1e4) for p in v])
            for k, v in parts.items()}


def test_load(setup):
    task, data, _ = setup
    assert task.head == "qa" and task.name == ("squad" if task.version == "v1" else "squad_v2")
    examples, features = data.extras["validation"]
    n_ex = 3 if task.version == "v1" else 4
    assert len(examples) == n_ex
    assert len(features) > n_ex  # the long context needs several windows per question
    assert len(data.evals["validation"]) == len(features)
    assert data.evals["validation"].column_names == ["input_ids", "attention_mask"]
    assert set(data.train.column_names) == {"input_ids", "attention_mask", "start_positions", "end_positions"}
    assert max(len(x) for x in data.train["input_ids"]) <= MAX_LEN
    batch = data.collate([data.train[i] for i in range(3)])
    assert batch["input_ids"].shape[0] == 3 and batch["start_positions"].shape == (3,)


def test_tiny_model_through_compute_metrics(setup):
    task, data, out = setup
    model = tiny_model("tiny-deberta", head="qa")
    loss = model(**task.model_inputs(data.collate([data.train[i] for i in range(4)]))).loss
    assert torch.isfinite(loss)
    gathered = run_model(model, task, data)
    metrics = task.compute_metrics("validation", gathered, data, out)
    preds = json.loads((out / "predictions.json").read_text())
    assert set(preds) == set(data.extras["validation"][0]["id"])
    if task.version == "v1":
        assert set(metrics) == {"validation/exact_match", "validation/f1"}
        assert not (out / "null_odds.json").exists()
    else:
        expected = {"exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact",
                    "NoAns_f1", "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}
        assert set(metrics) == {f"validation/{k}" for k in expected}
        assert metrics["validation/total"] == 4 and metrics["validation/NoAns_total"] == 1
        assert set(json.loads((out / "null_odds.json").read_text())) == set(preds)
    assert all(0.0 <= v <= 100.0 for k, v in metrics.items() if k.endswith(("exact", "f1", "exact_match")))
    assert task.score(metrics) == metrics["validation/f1"]


def oracle_logits(data):
    """Logits that point at the gold answer in every window holding it, else at CLS."""
    examples, features = data.extras["validation"]
    gold = {e["id"]: (e["answers"]["answer_start"][:1], e["answers"]["text"][:1]) for e in examples}
    width = max(len(x) for x in features["input_ids"])
    st, en = np.zeros((len(features), width)), np.zeros((len(features), width))
    rows = zip(features["example_id"], features["offset_mapping"], features["cls_index"])
    for f, (eid, offs, cls) in enumerate(rows):
        (starts, texts) = gold[eid]
        ctx = [k for k, o in enumerate(offs) if o is not None]
        if starts and offs[ctx[0]][0] <= starts[0] and offs[ctx[-1]][1] >= starts[0] + len(texts[0]):
            a, b = starts[0], starts[0] + len(texts[0])
            st[f, next(k for k in ctx if offs[k][1] > a)] = 10.0
            en[f, max(k for k in ctx if offs[k][0] < b)] = 10.0
        else:
            st[f, cls] = en[f, cls] = 10.0
    return {"start_logits": st, "end_logits": en}


def test_oracle_logits_score_100_and_rescoring_matches(setup, capsys):
    task, data, out = setup
    metrics = task.compute_metrics("validation", oracle_logits(data), data, out)
    preds = json.loads((out / "predictions.json").read_text())
    assert preds["q1"] == "north" and preds["q3"] == "Kell"
    if task.version == "v1":
        assert metrics == {"validation/exact_match": 100.0, "validation/f1": 100.0}
        return
    assert preds["q4"] == ""
    assert metrics["validation/exact"] == metrics["validation/f1"] == 100.0
    assert metrics["validation/NoAns_exact"] == 100.0 and metrics["validation/best_f1"] == 100.0
    # the offline tool reproduces every key from the written files
    dev = str(out / "dev-v2.0.json")
    full = rescore(["--version", "v2", "--data", dev, "--predictions", str(out / "predictions_best_span.json"),
                    "--na-probs", str(out / "null_odds.json"), "--na-prob-thresh", str(task.null_threshold)])
    assert {f"validation/{k}": float(v) for k, v in full.items()} == metrics
    official_flow = rescore(["--version", "v2", "--data", dev, "--predictions", str(out / "predictions.json"),
                             "--na-probs", str(out / "null_odds.json")])
    assert official_flow["exact"] == 100.0 and official_flow["f1"] == 100.0


def test_limits_and_v2_threshold(tmp_path):
    for name in ("train-v2.0.json", "dev-v2.0.json"):
        (tmp_path / name).write_text(json.dumps(official("v2")))
    task = SquadTask("v2", str(tmp_path), doc_stride=STRIDE, null_threshold=1e6)
    data = task.load(byte_tokenizer(), MAX_LEN, limit=2, seed=0, limit_eval=3)
    assert len(data.extras["validation"][0]) == 3
    assert set(data.train.column_names) >= {"start_positions", "end_positions"}
    metrics = task.compute_metrics("validation", oracle_logits(data), data, None)  # no out_dir: no files
    # a huge threshold never predicts "no answer": every answerable one is right, q4 (if kept) wrong
    kept = data.extras["validation"][0]["id"]
    assert metrics["validation/HasAns_exact"] == 100.0
    assert metrics["validation/exact"] == pytest.approx(100.0 * sum(q != "q4" for q in kept) / 3)
