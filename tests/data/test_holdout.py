"""`data.holdout` (a seeded held-out slice of the training set, the cleaner lr-selection protocol)
and `data.pad_to_max_length` (the authors' padding, for comparable training times)."""

from __future__ import annotations

import datasets
import pytest

from conftest import compose_cfg
from dcft.data.glue import split_holdout
from dcft.harness.models import byte_tokenizer
from dcft.tasks import build_task
from dcft.tasks.glue import GlueTask

N_TRAIN = 40


def _write_rte(root, n_train: int = N_TRAIN, n_dev: int = 6) -> None:
    d = root / "RTE"
    d.mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["index\tsentence1\tsentence2\tlabel"]
        rows += [f"{i}\t{split} premise number {i}\thypothesis {i}\t{'entailment' if i % 2 else 'not_entailment'}"
                 for i in range(n)]
        (d / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_split_is_a_seeded_partition_in_original_order():
    ds = datasets.Dataset.from_dict({"idx": list(range(50))})
    rest, held = split_holdout(ds, 0.2, seed=3)
    r, h = list(rest["idx"]), list(held["idx"])
    assert len(h) == 10 and len(r) == 40  # round(0.2 x 50)
    assert sorted(r + h) == list(range(50)) and not set(r) & set(h)  # a partition
    assert r == sorted(r) and h == sorted(h)  # original order kept
    assert list(split_holdout(ds, 0.2, seed=3)[1]["idx"]) == h  # the same seed, the same rows
    assert list(split_holdout(ds, 0.2, seed=4)[1]["idx"]) != h  # another seed, other rows
    assert len(split_holdout(ds, 0.001, seed=0)[1]) == 1  # at least one example


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True])
def test_split_rejects_bad_fractions(bad):
    with pytest.raises(ValueError, match="data.holdout"):
        split_holdout(datasets.Dataset.from_dict({"idx": [0, 1, 2]}), bad)


@pytest.mark.parametrize("bad", [1.0, -0.5])
def test_task_rejects_bad_holdout_before_loading(bad):
    with pytest.raises(ValueError, match=r"data.holdout=.*\[0, 1\)"):
        GlueTask("rte", glue_dir="/nonexistent", holdout=bad)


def test_holdout_is_an_eval_set_taken_from_train(tmp_path):
    _write_rte(tmp_path)
    tok = byte_tokenizer()
    plain = GlueTask("rte", glue_dir=str(tmp_path)).load(tok, 64, seed=6)
    task = GlueTask("rte", glue_dir=str(tmp_path), holdout=0.25)
    data = task.load(tok, 64, seed=6)
    assert list(data.evals) == ["holdout", "validation"]
    assert len(data.evals["holdout"]) == 10 and len(data.train) == N_TRAIN - 10
    assert len(data.evals["validation"]) == len(plain.evals["validation"]) == 6  # dev untouched
    train_ids = {tuple(x) for x in data.train["input_ids"]}
    held_ids = {tuple(x) for x in data.evals["holdout"]["input_ids"]}
    assert not train_ids & held_ids and train_ids | held_ids == {tuple(x) for x in plain.train["input_ids"]}


def test_best_step_is_chosen_on_the_holdout_when_on():
    metrics = {"holdout/accuracy": 0.6, "validation/accuracy": 0.9}
    assert GlueTask("rte").score(metrics) == 0.9
    assert GlueTask("rte", holdout=0.1).score(metrics) == 0.6
    mnli = {"holdout/accuracy": 0.5, "validation_matched/accuracy": 0.8, "validation_mismatched/accuracy": 0.7}
    assert GlueTask("mnli", holdout=0.1).score(mnli) == 0.5


def test_pad_to_max_length_pads_every_batch(tmp_path):
    _write_rte(tmp_path)
    tok = byte_tokenizer()
    for pad, expect in ((True, {48}), (False, None)):
        data = GlueTask("rte", glue_dir=str(tmp_path), pad_to_max_length=pad).load(tok, 48, seed=0)
        batch = data.collate([data.train[i] for i in range(4)])
        width = batch["input_ids"].shape[1]
        if expect:
            assert {width} == expect
        else:
            assert width == max(len(data.train[i]["input_ids"]) for i in range(4)) < 48


def test_config_keys_reach_the_task_and_squad_refuses_them():
    cfg = compose_cfg(["task=rte", "data.holdout=0.1", "data.pad_to_max_length=true"])
    task = build_task(cfg.task, cfg.data)
    assert (task.holdout, task.pad_to_max_length) == (0.1, True)
    cfg = compose_cfg(["task=squad", "data.holdout=0.1"])
    with pytest.raises(ValueError, match="data.holdout=0.1 is implemented for GLUE tasks only"):
        build_task(cfg.task, cfg.data)
