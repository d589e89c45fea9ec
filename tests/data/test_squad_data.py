"""Loading SQuAD: official JSON files written by the tests, the Hub path via a patched
`datasets.load_dataset`, and the error messages."""

from __future__ import annotations

import json

import datasets
import pytest
import torch

from dcft.data import squad
from dcft.data.glue import DataError
from dcft.data.squad import FEATURES, QACollator, load_squad, read_squad_json

CTX1 = " Denver won in 2016."  # leading blank kept verbatim
CTX2 = "Paris is the capital of France."


def official(version: str) -> dict:
    qa_dev = {"id": "d1", "question": "Who won?", "answers": [
        {"text": "Denver", "answer_start": 1}, {"text": "Denver", "answer_start": 1},
        {"text": "Denver won", "answer_start": 1}]}
    qas2 = [{"id": "d2", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]}]
    if version == "v2":
        for q in [qa_dev] + qas2:
            q["is_impossible"] = False
        qas2.append({"id": "d3", "question": "Capital of Spain?", "answers": [], "is_impossible": True,
                     "plausible_answers": [{"text": "Paris", "answer_start": 0}]})
    return {"version": "1.1" if version == "v1" else "v2.0", "data": [
        {"title": "Super_Bowl", "paragraphs": [{"context": CTX1, "qas": [qa_dev]}]},
        {"title": "Paris", "paragraphs": [{"context": CTX2, "qas": qas2}]},
    ]}


def write_dir(root, version: str):
    root.mkdir(parents=True, exist_ok=True)
    for split, name in squad.FILES[version].items():
        (root / name).write_text(json.dumps(official(version)), encoding="utf-8")
    return root


def test_load_official_v1(tmp_path):
    dd = load_squad("v1", write_dir(tmp_path, "v1"))
    assert set(dd) == {"train", "validation"}
    val = dd["validation"]
    assert val.features == FEATURES
    assert val["id"] == ["d1", "d2"] and val["title"] == ["Super_Bowl", "Paris"]
    assert val[0]["context"] == CTX1  # not stripped
    assert val[0]["answers"] == {"text": ["Denver", "Denver", "Denver won"], "answer_start": [1, 1, 1]}


def test_load_official_v2_unanswerable(tmp_path):
    dd = load_squad("v2.0", write_dir(tmp_path, "v2"))
    val = dd["validation"]
    assert val["id"] == ["d1", "d2", "d3"]
    assert val[2]["answers"] == {"text": [], "answer_start": []}  # plausible answers are not gold
    assert val[2]["question"] == "Capital of Spain?"


def test_hub_path(monkeypatch):
    calls = []

    def fake_load(name, *args, **kwargs):
        calls.append(name)
        rows = [dict(r, extra=1) for r in read_hub_rows()]
        split = datasets.Dataset.from_list(rows)
        return datasets.DatasetDict(train=split, validation=split)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    dd = load_squad("v2")
    assert calls == ["rajpurkar/squad_v2"]
    assert dd["train"].column_names == list(FEATURES) and dd["train"].features == FEATURES
    assert dd["validation"][0]["answers"]["text"] == ["Denver"]
    load_squad("v1")
    assert calls[-1] == "rajpurkar/squad"


def read_hub_rows():
    return [{"id": "h1", "title": "T", "context": CTX1, "question": "Who?",
             "answers": {"text": ["Denver"], "answer_start": [1]}}]


def test_hub_unreachable_names_both_options(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as e:
        load_squad("v2")
    msg = str(e.value)
    for part in ("rajpurkar/squad_v2", "Couldn't reach", "data.squad_dir=PATH", "train-v2.0.json", "dev-v2.0.json"):
        assert part in msg


def test_hub_missing_column(monkeypatch):
    ds = datasets.Dataset.from_list([{"id": "x", "question": "?"}])
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict(train=ds, validation=ds))
    with pytest.raises(DataError, match=r"missing column\(s\) \['title', 'context', 'answers'\]"):
        load_squad("v1")


def test_dir_errors(tmp_path):
    with pytest.raises(DataError, match="is not a directory.*train-v1.1.json and dev-v1.1.json"):
        load_squad("v1", tmp_path / "nope")
    (tmp_path / "train-v1.1.json").write_text(json.dumps(official("v1")))
    with pytest.raises(DataError, match=r"validation file not found: expected .*dev-v1\.1\.json"):
        load_squad("v1", tmp_path)
    with pytest.raises(ValueError, match="valid: v1"):
        load_squad("v3", tmp_path)
    assert issubclass(DataError, ValueError)


@pytest.mark.parametrize("mutate, pattern", [
    (lambda d: d.pop("data"), r"the top level has no 'data' field"),
    (lambda d: d["data"][1]["paragraphs"][0].pop("qas"), r"data\[1\]\.paragraphs\[0\] has no 'qas'"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][2].update(answer_start="1"),
     r"data\[0\]\.paragraphs\[0\]\.qas\[0\] \(id 'd1'\)\.answers\[2\] field 'answer_start' is str, expected int"),
    (lambda d: d["data"][1]["paragraphs"][0]["qas"][0].pop("question"), r"\(id 'd2'\) has no 'question'"),
])
def test_malformed_json_names_file_and_place(tmp_path, mutate, pattern):
    d = official("v1")
    mutate(d)
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(d))
    with pytest.raises(DataError, match=pattern) as e:
        read_squad_json(path)
    assert str(path) in str(e.value)


def test_not_json(tmp_path):
    path = tmp_path / "dev-v2.0.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_squad_json(path)


def test_collator_pads_right():
    coll = QACollator(pad_token_id=0)
    out = coll([{"input_ids": [1, 5, 2], "attention_mask": [1, 1, 1], "start_positions": 1, "end_positions": 1,
                 "offset_mapping": None},
                {"input_ids": [1, 2], "attention_mask": [1, 1], "start_positions": 0, "end_positions": 0,
                 "offset_mapping": None}])
    assert set(out) == {"input_ids", "attention_mask", "start_positions", "end_positions"}
    assert out["input_ids"].tolist() == [[1, 5, 2], [1, 2, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["start_positions"].dtype == torch.long and out["end_positions"].tolist() == [1, 0]
    assert QACollator(0, pad_to_multiple_of=8)([{"input_ids": [1, 2, 3]}])["input_ids"].shape == (1, 8)
