"""The `max_answer_length` boundary through `SquadTask.compute_metrics`, both SQuAD versions.

`max_answer_length` is the longest answer in tokens: a span of exactly that many tokens is allowed,
one token longer is not. Hand-built logits make the longer span the better one (9 + 9 against
9 + 5), so an off-by-one either way changes the prediction: one token too many picks the longer
span, one too few loses the gold span. The byte tokenizer makes one token per character.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dcft.harness.models import byte_tokenizer
from dcft.tasks.squad import SquadTask

L = 6  # max_answer_length, tokens
CONTEXT = "abcdefghijklmnopqrstuvwxyz0123456789"  # one token per character
START = 5  # the answer starts at character 5 ("f")
GOLD = CONTEXT[START:START + L]  # exactly L tokens: "fghijk"


def write_squad(root, version: str) -> None:
    qa = {"id": "q1", "question": "Which?", "answers": [{"text": GOLD, "answer_start": START}]}
    if version == "v2":
        qa["is_impossible"] = False
    doc = {"data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": [qa]}]}]}
    names = {"v1": ("train-v1.1.json", "dev-v1.1.json"), "v2": ("train-v2.0.json", "dev-v2.0.json")}[version]
    for name in names:
        (root / name).write_text(json.dumps(doc), encoding="utf-8")


def token_at(offsets, char: int) -> int:
    return next(k for k, o in enumerate(offsets) if o is not None and o[0] == char)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_span_of_exactly_max_answer_length_wins_over_a_better_longer_one(tmp_path, version):
    write_squad(tmp_path, version)
    task = SquadTask(version=version, squad_dir=str(tmp_path), doc_stride=16, n_best=5, max_answer_length=L)
    data = task.load(byte_tokenizer(), 64)
    examples, features = data.extras["validation"]
    assert len(features) == 1  # one window holds the whole context
    offsets = features["offset_mapping"][0]
    width = len(features["input_ids"][0])
    start, end = np.zeros((1, width)), np.zeros((1, width))
    start[0, token_at(offsets, START)] = 9.0
    end[0, token_at(offsets, START + L - 1)] = 5.0  # the L-token span: 9 + 5 = 14
    end[0, token_at(offsets, START + L)] = 9.0  # the (L + 1)-token span: 9 + 9 = 18, too long
    metrics = task.compute_metrics("validation", {"start_logits": start, "end_logits": end}, data, tmp_path / "out")
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert preds == {"q1": GOLD}
    em = "validation/exact_match" if version == "v1" else "validation/exact"
    assert metrics[em] == 100.0 and metrics["validation/f1"] == 100.0
    assert task.score(metrics) == 100.0
