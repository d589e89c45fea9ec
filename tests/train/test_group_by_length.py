"""`train.group_by_length`: batches of similar length, every example once per epoch, seeded.

Oracles: the example indices (each row carries its index as its label), and the padding a batch
needs (its longest row times its size, minus its real tokens), counted here by hand."""

from __future__ import annotations

import datasets
import torch

from dcft.tasks.base import TaskData
from dcft.harness.train import make_loaders


def _data(n: int = 400, seed: int = 0) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 60, (n,), generator=g).tolist()
    ds = datasets.Dataset.from_dict({"input_ids": [[1] * k for k in lengths], "labels": list(range(n))})

    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        return {"input_ids": torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows]),
                "labels": torch.tensor([r["labels"] for r in rows])}

    return TaskData(train=ds, evals={}, collate=collate)


def _padding(loader) -> tuple[list[int], int]:
    seen, pad = [], 0
    for batch in loader:
        seen += batch["labels"].tolist()
        pad += int((batch["input_ids"] == 0).sum())
    return seen, pad


def test_grouped_batches_see_every_example_once_with_less_padding():
    data = _data()
    plain, _ = make_loaders(data, 16, 64, seed=3)
    grouped, _ = make_loaders(data, 16, 64, seed=3, group_by_length=True)
    seen_plain, pad_plain = _padding(plain)
    seen_grouped, pad_grouped = _padding(grouped)
    assert sorted(seen_grouped) == list(range(400)) == sorted(seen_plain)
    assert pad_grouped < pad_plain / 3  # lengths 2..59 at random: plain batches pad to ~57 on average


def test_grouped_order_is_seeded_and_changes_between_epochs():
    data = _data()
    a, _ = make_loaders(data, 16, 64, seed=3, group_by_length=True)
    b, _ = make_loaders(data, 16, 64, seed=3, group_by_length=True)
    c, _ = make_loaders(data, 16, 64, seed=4, group_by_length=True)
    first_a, second_a = _padding(a)[0], _padding(a)[0]
    assert first_a == _padding(b)[0]
    assert first_a != _padding(c)[0]
    assert first_a != second_a


def test_eval_by_length_keeps_every_example_and_only_reorders():
    data = _data()
    data.evals["dev"] = data.train
    _, plain = make_loaders(data, 16, 32, seed=3)
    _, by_length = make_loaders(data, 16, 32, seed=3, eval_by_length=True)
    assert [r for b in plain["dev"] for r in b["labels"].tolist()] == list(range(400))  # file order
    rows = [r for b in by_length["dev"] for r in b["labels"].tolist()]
    assert sorted(rows) == list(range(400))
    lengths = [len(data.train[i]["input_ids"]) for i in rows]
    assert lengths == sorted(lengths)
