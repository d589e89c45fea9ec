"""Backbones: loaded from a local directory with the classifier dropout of each family; target sets."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_MODELS, model_cfg, tiny_model
from dcft.models import CLS_DROPOUT_KEY, TARGET_SETS, load_model, resolve_targets


@pytest.mark.parametrize("name", TINY_MODELS)
def test_local_directory_loads_with_cls_dropout(name, tmp_path):
    saved = tiny_model(name)
    saved.save_pretrained(tmp_path)
    cfg = {**model_cfg(name), "source": "pretrained", "path": str(tmp_path)}
    loaded = load_model(cfg, num_labels=2, cls_dropout=0.25)
    assert getattr(loaded.config, CLS_DROPOUT_KEY[cfg["family"]]) == 0.25
    sd_a, sd_b = saved.state_dict(), loaded.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_target_sets_resolve_per_family_and_never_the_pooler(name):
    m = tiny_model(name)
    counts = {t: len(resolve_targets(m, t)) for t in TARGET_SETS}
    assert counts == {"all": 12, "qk": 4, "qv": 4, "qkv": 6, "qkvo": 8}  # 2 layers
    names = resolve_targets(m, "all")
    assert not any("pooler" in n or "classifier" in n for n in names)
    assert sum(n.endswith("attention.output.dense") for n in names) == 2
    assert sum(n.endswith(".output.dense") and "attention" not in n for n in names) == 2


def test_unknown_target_set_lists_the_valid_ones():
    with pytest.raises(ValueError, match="qkvo"):
        resolve_targets(tiny_model("tiny-bert"), "qz")
