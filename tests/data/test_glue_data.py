"""GLUE loading from the original tsv layout and from the (emulated) Hub, errors, subsampling,
tokenisation. Fixtures are written to tmp_path in the GLUE layout, with its quirks."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from dcft.data import glue as glue_mod
from dcft.data.glue import (GLUE_TASKS, DataError, GlueTask, get_task, load_glue, read_glue_tsv,
                            subsample, tokenize_glue, tsv_path)
from dcft.harness.models import byte_tokenizer

STRAY = '"What is a "good" book?'  # unbalanced quotes: default csv quoting would swallow lines


def _tsv(rows, header=None, eol="\n") -> str:
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    return eol.join(lines) + eol


MNLI_TRAIN_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                   "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
MNLI_DEV_HEAD = MNLI_TRAIN_HEAD[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]
STSB_HEAD = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]


def _mnli_row(i, s1, s2, gold, dev=False):
    votes = [gold] * (5 if dev else 1)
    return [str(i), "31193", f"{i}n", "government", "( ( x ) )", "( y )", "(ROOT x)", "(ROOT y)", s1, s2, *votes, gold]


def _stsb_row(i, s1, s2, score):
    return [str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", s1, s2, score]


# task -> ({relative path: file text}, {split: [(text_a, text_b or None, label)]})
FIXTURES: dict[str, tuple[dict[str, str], dict[str, list]]] = {
    "cola": (  # no header; label notes column is "*" for some rows
        {"CoLA/train.tsv": _tsv([["gj04", "1", "", "Our friends won't buy this analysis."],
                                 ["gj04", "0", "*", "They drank the pub."],
                                 ["cj99", "1", "", STRAY]]),
         "CoLA/dev.tsv": _tsv([["gj04", "0", "*", "The more we study verbs, the crazier."]])},
        {"train": [("Our friends won't buy this analysis.", None, 1), ("They drank the pub.", None, 0),
                   (STRAY, None, 1)],
         "validation": [("The more we study verbs, the crazier.", None, 0)]},
    ),
    "sst2": (
        {"SST-2/train.tsv": _tsv([["hide new secretions from the parental units ", "0"],
                                  ['" unfunny " and lame ', "0"], ["a charming journey . ", "1"]],
                                 header=["sentence", "label"]),
         "SST-2/dev.tsv": _tsv([["it 's a charming and often affecting journey . ", "1"]], header=["sentence", "label"])},
        {"train": [("hide new secretions from the parental units ", None, 0), ('" unfunny " and lame ', None, 0),
                   ("a charming journey . ", None, 1)],
         "validation": [("it 's a charming and often affecting journey . ", None, 1)]},
    ),
    "mrpc": (  # header with a UTF-8 BOM (as in the MSR release), non-ASCII text
        {"MRPC/train.tsv": "\ufeff" + _tsv([["1", "702876", "702977", "Amrozi accused his brother .", "Referring to him ."],
                                            ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .", "Café \"Zoë\" sold it ."]],
                                           header=["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]),
         "MRPC/dev.tsv": _tsv([["1", "1355540", "1355592", "He said the foodservice .", "The foodservice ."]],
                              header=["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"])},
        {"train": [("Amrozi accused his brother .", "Referring to him .", 1),
                   ("Yucaipa owned Dominick 's .", "Café \"Zoë\" sold it .", 0)],
         "validation": [("He said the foodservice .", "The foodservice .", 1)]},
    ),
    "qqp": (  # a stray quote that must survive (QUOTE_NONE)
        {"QQP/train.tsv": _tsv([["133273", "213221", "213222", STRAY, "Which book is good?", "1"],
                                ["402555", "536040", "536041", "How do I learn?", "What's the way?", "0"]],
                               header=["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]),
         "QQP/dev.tsv": _tsv([["1", "2", "3", "Why?", 'Why "not?', "0"]],
                             header=["id", "qid1", "qid2", "question1", "question2", "is_duplicate"])},
        {"train": [(STRAY, "Which book is good?", 1), ("How do I learn?", "What's the way?", 0)],
         "validation": [("Why?", 'Why "not?', 0)]},
    ),
    "stsb": (
        {"STS-B/train.tsv": _tsv([_stsb_row(0, "A plane is taking off.", "An air plane is taking off.", "5.000"),
                                  _stsb_row(1, 'A man says "hi.', "A man talks.", "3.800"),
                                  _stsb_row(2, "A cat.", "A dog.", "0.000")],
                                 header=STSB_HEAD),
         "STS-B/dev.tsv": _tsv([_stsb_row(0, "A man with a hard hat.", "A man wearing a hard hat.", "4.750")],
                               header=STSB_HEAD)},
        {"train": [("A plane is taking off.", "An air plane is taking off.", np.float32(5.0)),
                   ('A man says "hi.', "A man talks.", np.float32(3.8)), ("A cat.", "A dog.", np.float32(0.0))],
         "validation": [("A man with a hard hat.", "A man wearing a hard hat.", np.float32(4.75))]},
    ),
    "mnli": (  # train has label1 only, dev has label1..label5: gold_label found by header name
        {"MNLI/train.tsv": _tsv([_mnli_row(0, STRAY, "Product and geography.", "neutral"),
                                 _mnli_row(1, "You know.", "You don't.", "contradiction"),
                                 _mnli_row(2, "One of our number.", "A member.", "entailment")], header=MNLI_TRAIN_HEAD),
         "MNLI/dev_matched.tsv": _tsv([_mnli_row(0, "The new rights.", "Everyone likes.", "neutral", dev=True)],
                                      header=MNLI_DEV_HEAD),
         "MNLI/dev_mismatched.tsv": _tsv([_mnli_row(0, 'Your "gift.', "Gift.", "entailment", dev=True),
                                          _mnli_row(1, "No.", "Yes.", "contradiction", dev=True)], header=MNLI_DEV_HEAD)},
        {"train": [(STRAY, "Product and geography.", 1), ("You know.", "You don't.", 2),
                   ("One of our number.", "A member.", 0)],
         "validation_matched": [("The new rights.", "Everyone likes.", 1)],
         "validation_mismatched": [('Your "gift.', "Gift.", 0), ("No.", "Yes.", 2)]},
    ),
    "qnli": (
        {"QNLI/train.tsv": _tsv([["0", "When did it start?", "It started in 1990.", "entailment"],
                                 ["1", "Who?", "Nobody knows.", "not_entailment"]],
                                header=["index", "question", "sentence", "label"]),
         "QNLI/dev.tsv": _tsv([["0", "What?", "That.", "not_entailment"]], header=["index", "question", "sentence", "label"])},
        {"train": [("When did it start?", "It started in 1990.", 0), ("Who?", "Nobody knows.", 1)],
         "validation": [("What?", "That.", 1)]},
    ),
    "rte": (  # Windows line endings and a trailing blank line in train
        {"RTE/train.tsv": _tsv([["0", "No Weapons Found in Iraq Yet.", "Weapons Found in Iraq.", "not_entailment"],
                                ["1", "A place of sorrow.", "Pope Benedict XVI is the new leader.", "entailment"]],
                               header=["index", "sentence1", "sentence2", "label"], eol="\r\n") + "\r\n",
         "RTE/dev.tsv": _tsv([["0", "Dana Reeve has died.", "Christopher Reeve had an accident.", "not_entailment"]],
                             header=["index", "sentence1", "sentence2", "label"])},
        {"train": [("No Weapons Found in Iraq Yet.", "Weapons Found in Iraq.", 1),
                   ("A place of sorrow.", "Pope Benedict XVI is the new leader.", 0)],
         "validation": [("Dana Reeve has died.", "Christopher Reeve had an accident.", 1)]},
    ),
}


def write_fixture(root, task: str):
    """Write a task's GLUE-layout files under `root`; return the expected uniform examples."""
    files, expected = FIXTURES[task]
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    pair = GLUE_TASKS[task].is_pair
    return {split: [({"text_a": a, "text_b": b} if pair else {"text_a": a}) | {"label": y, "idx": i}
                    for i, (a, b, y) in enumerate(rows)]
            for split, rows in expected.items()}


def hub_dataset_dict(task: str) -> datasets.DatasetDict:
    """The fixture in the Hub's own schema (text columns, ClassLabel / float32 label, int32 idx),
    plus a label-less test split the loader must ignore."""
    t = GLUE_TASKS[task]
    a, b = t.text_keys
    label = datasets.Value("float32") if t.is_regression else datasets.ClassLabel(names=list(t.label_names))
    feats = {a: datasets.Value("string")} | ({b: datasets.Value("string")} if b else {})
    features = datasets.Features(feats | {"label": label, "idx": datasets.Value("int32")})
    out = {}
    for split, rows in FIXTURES[task][1].items():
        cols = {a: [r[0] for r in rows]} | ({b: [r[1] for r in rows]} if b else {})
        cols |= {"label": [float(r[2]) if t.is_regression else r[2] for r in rows], "idx": list(range(len(rows)))}
        out[split] = datasets.Dataset.from_dict(cols, features=features)
    test = {k: ["x"] for k in feats} | {"label": [-1.0 if t.is_regression else -1], "idx": [0]}
    for split in ["test_matched", "test_mismatched"] if task == "mnli" else ["test"]:
        out[split] = datasets.Dataset.from_dict(test, features=features)
    return datasets.DatasetDict(out)


def _records(ds: datasets.Dataset) -> list[dict]:
    return ds.to_list()


# --- task table ---------------------------------------------------------------------------------
def test_task_table():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"}
    assert GLUE_TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert GLUE_TASKS["mnli"].eval_splits == ("validation_matched", "validation_mismatched")
    assert GLUE_TASKS["stsb"].num_labels == 1 and GLUE_TASKS["stsb"].is_regression
    assert GLUE_TASKS["mnli"].num_labels == 3 and GLUE_TASKS["rte"].num_labels == 2
    assert {t.name: t.main_metric for t in GLUE_TASKS.values()} == {
        "cola": "matthews_correlation", "stsb": "pearson", "sst2": "accuracy", "mrpc": "accuracy",
        "qqp": "accuracy", "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy"}
    assert not GLUE_TASKS["cola"].is_pair and GLUE_TASKS["qnli"].is_pair
    assert get_task("SST-2") is GLUE_TASKS["sst2"] and get_task("STS-B") is GLUE_TASKS["stsb"]
    with pytest.raises(ValueError, match="valid: cola"):
        get_task("wnli")
    with pytest.raises(Exception):  # frozen
        GLUE_TASKS["rte"].name = "x"


# --- the tsv loader ------------------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(GLUE_TASKS))
def test_load_tsv(tmp_path, task):
    expected = write_fixture(tmp_path, task)
    data = load_glue(task, glue_dir=tmp_path)
    assert list(data) == list(GLUE_TASKS[task].splits)
    for split, ds in data.items():
        assert _records(ds) == expected[split], split
        cols = ["text_a", "text_b", "label", "idx"] if GLUE_TASKS[task].is_pair else ["text_a", "label", "idx"]
        assert ds.column_names == cols
        assert ds.features["label"].dtype == ("float32" if task == "stsb" else "int64")


def test_stray_quotes_survive(tmp_path):
    # with default csv quoting the first row's question would swallow the rest of the file
    write_fixture(tmp_path, "qqp")
    write_fixture(tmp_path, "mnli")
    qqp = load_glue("qqp", tmp_path, splits="train")["train"]
    mnli = load_glue("mnli", tmp_path, splits=["train"])["train"]
    assert len(qqp) == 2 and qqp[0]["text_a"] == STRAY
    assert len(mnli) == 3 and mnli[0]["text_a"] == STRAY and mnli[2]["label"] == 0


def test_splits_argument(tmp_path):
    write_fixture(tmp_path, "mnli")
    assert list(load_glue("mnli", tmp_path, splits=["validation_mismatched"])) == ["validation_mismatched"]
    with pytest.raises(ValueError, match="validation_matched"):
        load_glue("mnli", tmp_path, splits=["validation"])
    assert tsv_path("mnli", tmp_path, "validation_matched") == tmp_path / "MNLI" / "dev_matched.tsv"


# --- Hub and tsv give identical examples ----------------------------------------------------------
@pytest.mark.parametrize("task", sorted(GLUE_TASKS))
def test_hub_and_tsv_identical(tmp_path, monkeypatch, task):
    write_fixture(tmp_path, task)
    calls = []

    def fake_load_dataset(path, name=None, *args, **kwargs):
        calls.append((path, name))
        return hub_dataset_dict(task)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hub = load_glue(task)
    tsv = load_glue(task, glue_dir=tmp_path)
    assert calls == [("nyu-mll/glue", GLUE_TASKS[task].hub_name)]
    assert list(hub) == list(tsv)
    for split in tsv:
        assert hub[split].features == tsv[split].features
        assert _records(hub[split]) == _records(tsv[split])


def test_hub_label_order_is_checked(monkeypatch):
    dd = hub_dataset_dict("rte")
    swapped = datasets.ClassLabel(names=["not_entailment", "entailment"])
    dd = datasets.DatasetDict({k: v.cast_column("label", swapped) for k, v in dd.items()})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dd)
    with pytest.raises(DataError, match="label names"):
        load_glue("rte")


def test_hub_unreachable_gives_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        load_glue("rte")
    msg = str(err.value)
    assert "data.glue_dir=" in msg and "RTE/train.tsv" in msg and "make the Hub reachable" in msg
    assert "ConnectionError" in msg


# --- file errors ------------------------------------------------------------------------------------
def test_missing_task_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "RTE")):
        load_glue("rte", glue_dir=tmp_path)


def test_missing_file_names_expected_path(tmp_path):
    write_fixture(tmp_path, "rte")
    (tmp_path / "RTE" / "dev.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "RTE" / "dev.tsv")):
        load_glue("rte", glue_dir=tmp_path)


def _write(tmp_path, rel: str, data: str | bytes):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def test_wrong_columns(tmp_path):
    path = _write(tmp_path, "RTE/train.tsv", _tsv([["0", "a", "b", "entailment"]],
                                                  header=["index", "premise", "hypothesis", "label"]))
    with pytest.raises(DataError) as err:
        read_glue_tsv("rte", path)
    msg = str(err.value)
    assert str(path) in msg and "sentence1" in msg and "'premise'" in msg  # file, expected, found


def test_cola_with_a_header_or_wrong_field_count(tmp_path):
    path = _write(tmp_path, "CoLA/train.tsv", _tsv([["gj04", "1", "A sentence."]]))  # 3 fields
    with pytest.raises(DataError, match=r"line 1: 3 tab-separated fields, expected 4.*label-notes"):
        read_glue_tsv("cola", path)
    path = _write(tmp_path, "RTE/train.tsv", _tsv([["0", "a", "entailment"]], header=["index", "sentence1", "sentence2", "label"]))
    with pytest.raises(DataError, match="line 2: 3 tab-separated fields, expected 4"):
        read_glue_tsv("rte", path)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = _write(tmp_path, "SST-2/train.tsv", content)
    with pytest.raises(DataError, match=f"{path}: file is empty"):
        read_glue_tsv("sst2", path)


def test_header_only(tmp_path):
    path = _write(tmp_path, "SST-2/train.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match="no examples"):
        read_glue_tsv("sst2", path)


@pytest.mark.parametrize("task,rel,text,bad", [
    ("rte", "RTE/dev.tsv", _tsv([["0", "a", "b", "entailment"], ["1", "c", "d", "entailed"]],
                                header=["index", "sentence1", "sentence2", "label"]), "entailed"),
    ("cola", "CoLA/dev.tsv", _tsv([["gj04", "1", "", "a"], ["gj04", "2", "", "b"], ["gj04", "0", "*", "c"]]), "2"),
    ("mnli", "MNLI/train.tsv", _tsv([_mnli_row(0, "a", "b", "neutral"), _mnli_row(1, "c", "d", "-")],
                                    header=MNLI_TRAIN_HEAD), "-"),
    ("stsb", "STS-B/dev.tsv", _tsv([_stsb_row(0, "a", "b", "1.0"), _stsb_row(1, "c", "d", "5.5")],
                                   header=STSB_HEAD), "5.5"),
    ("stsb", "STS-B/dev.tsv", _tsv([_stsb_row(0, "a", "b", "1.0"), _stsb_row(1, "c", "d", "n/a")],
                                   header=STSB_HEAD), "n/a"),
])
def test_label_outside_label_space(tmp_path, task, rel, text, bad):
    path = _write(tmp_path, rel, text)
    with pytest.raises(DataError) as err:
        read_glue_tsv(task, path)
    msg = str(err.value)
    bad_line = 2 if task == "cola" else 3  # CoLA has no header line
    assert f"{path}, line {bad_line}" in msg and f"label {bad!r}" in msg


def test_non_utf8_bytes(tmp_path):
    head = b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tcaf"
    data = head + b"\xe9\tc\tnot_entailment\n"  # Latin-1 e-acute, on line 3
    path = _write(tmp_path, "RTE/train.tsv", data)
    with pytest.raises(DataError) as err:
        read_glue_tsv("rte", path)
    msg = str(err.value)
    assert str(path) in msg and f"byte offset {len(head)}" in msg and "line 3" in msg and "0xe9" in msg


# --- subsample -------------------------------------------------------------------------------------
def _numbers(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text_a": [str(i) for i in range(n)], "label": [i % 2 for i in range(n)],
                                       "idx": list(range(n))})


def test_subsample_is_deterministic_ordered_and_nested():
    ds = _numbers(100)
    a, b = subsample(ds, 10, seed=1), subsample(ds, 10, seed=1)
    assert list(a["idx"]) == list(b["idx"]) and len(a) == 10
    assert list(a["idx"]) == sorted(a["idx"])  # original order kept
    assert list(a["idx"]) != list(range(10))  # a seeded draw, not the first rows
    assert list(subsample(ds, 10, seed=2)["idx"]) != list(a["idx"])
    assert set(a["idx"]) <= set(subsample(ds, 20, seed=1)["idx"])  # nested as limit grows
    expected = sorted(np.random.default_rng(1).permutation(100)[:10].tolist())
    assert list(a["idx"]) == expected  # the documented rule


def test_subsample_no_op_and_errors():
    ds = _numbers(5)
    assert subsample(ds, None, 0) is ds and subsample(ds, 5, 0) is ds and subsample(ds, 50, 0) is ds
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            subsample(ds, bad, 0)


# --- tokenize_glue -------------------------------------------------------------------------------
def test_tokenize_pair_and_single():
    tok = byte_tokenizer()
    ids = dict(zip("abc", tok.convert_tokens_to_ids(list("abc"))))
    pair = datasets.Dataset.from_dict({"text_a": ["ab", "a"], "text_b": ["c", "cc"], "label": [1, 0], "idx": [0, 1]},
                                      features=glue_mod._features(GLUE_TASKS["rte"]))
    out = tokenize_glue(pair, tok, GLUE_TASKS["rte"], max_len=32)
    assert set(out.column_names) <= {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert {"input_ids", "attention_mask", "labels"} <= set(out.column_names)
    assert out[0]["input_ids"] == [1, ids["a"], ids["b"], 2, ids["c"], 2]  # [CLS] a b [SEP] c [SEP]
    assert out[1]["input_ids"] == [1, ids["a"], 2, ids["c"], ids["c"], 2]
    assert out[0]["attention_mask"] == [1] * 6
    assert list(out["labels"]) == [1, 0] and out.features["labels"].dtype == "int64"

    single = datasets.Dataset.from_dict({"text_a": ["ba", "abc"], "label": [0, 1], "idx": [0, 1]})
    out = tokenize_glue(single, tok, "cola", max_len=32)
    assert out[0]["input_ids"] == [1, ids["b"], ids["a"], 2]
    assert len(out[1]["input_ids"]) == 5  # not padded to a common length


def test_tokenize_truncates_and_regression_labels(tmp_path):
    write_fixture(tmp_path, "stsb")
    ds = load_glue("stsb", tmp_path, splits="train")["train"]
    out = tokenize_glue(ds, byte_tokenizer(), GLUE_TASKS["stsb"], max_len=8)
    assert all(len(x) == 8 and x[-1] == 2 for x in out["input_ids"])  # truncated, ends with [SEP]
    assert out.features["labels"].dtype == "float32"
    assert np.allclose(list(out["labels"]), [5.0, 3.8, 0.0])
    # the collator the training loop uses pads it and keeps float labels
    from transformers import DataCollatorWithPadding

    batch = DataCollatorWithPadding(byte_tokenizer())([out[0], out[1]])
    assert batch["input_ids"].shape == (2, 8) and str(batch["labels"].dtype) == "torch.float32"


def test_tokenize_rejects_wrong_schema():
    ds = datasets.Dataset.from_dict({"text_a": ["a"], "label": [0], "idx": [0]})
    with pytest.raises(ValueError, match="text_b"):
        tokenize_glue(ds, byte_tokenizer(), "rte", max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        tokenize_glue(ds, byte_tokenizer(), "cola", max_len=0)


def test_glue_task_is_a_dataclass():
    assert isinstance(GLUE_TASKS["qqp"], GlueTask) and GLUE_TASKS["qqp"].dir_name == "QQP"
