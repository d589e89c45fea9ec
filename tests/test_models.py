"""Backbones: loaded from a local directory with the classifier dropout of each family; target sets."""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import TINY_MODELS, model_cfg, tiny_model
from dcft.harness.models import CLS_DROPOUT_KEY, TARGET_SETS, load_model, resolve_targets


@pytest.mark.parametrize("name", TINY_MODELS)
def test_local_directory_loads_with_cls_dropout(name, tmp_path):
    saved = tiny_model(name)
    saved.save_pretrained(tmp_path)
    cfg = {**model_cfg(name), "source": "pretrained", "path": str(tmp_path)}
    loaded = load_model(cfg, num_labels=2, cls_dropout=0.25)
    assert getattr(loaded.config, CLS_DROPOUT_KEY[cfg["family"]]) == 0.25
    sd_a, sd_b = saved.state_dict(), loaded.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_pretrained_weights_take_dropout_from_arch_and_warn_on_other_differences(tmp_path):
    saved = tiny_model("tiny-bert")
    saved.save_pretrained(tmp_path)
    base = {**model_cfg("tiny-bert"), "source": "pretrained", "path": str(tmp_path)}
    arch = {**base["arch"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # equal architecture numbers: no warning
        loaded = load_model({**base, "arch": arch})
    assert loaded.config.hidden_dropout_prob == 0.0 and loaded.config.attention_probs_dropout_prob == 0.0
    assert saved.config.hidden_dropout_prob > 0.0
    assert all(m.p == 0.0 for m in loaded.bert.modules() if isinstance(m, torch.nn.Dropout))
    wrong = {**arch, "hidden_size": saved.config.hidden_size * 2}
    with pytest.warns(UserWarning, match=f"model.arch.hidden_size={saved.config.hidden_size * 2}.*checkpoint"):
        loaded = load_model({**base, "arch": wrong})
    assert loaded.config.hidden_size == saved.config.hidden_size


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


def test_describe_targets_names_the_kind_of_spec():
    from dcft.harness.models import describe_targets

    assert describe_targets("qv") == "qv"
    assert describe_targets(["query", "value"]) == "[query,value]"
    assert describe_targets(r".*\.q_proj") == r"re:.*\.q_proj"


def test_in_out_features_reads_conv1d_weights_transposed():
    from transformers.pytorch_utils import Conv1D

    from dcft.harness.models import in_out_features, iter_linear, iter_targets

    model = torch.nn.Sequential(torch.nn.Linear(3, 5), Conv1D(7, 3))  # Conv1D(nf=out, nx=in): weight (3, 7)
    assert [in_out_features(m) for m in model] == [(3, 5), (3, 7)]
    assert [n for n, _ in iter_targets(model, ["0", "1"])] == ["0", "1"]
    with pytest.raises(ValueError, match="'1' is Conv1D, not nn.Linear"):
        list(iter_linear(model, ["0", "1"]))
    with pytest.raises(TypeError, match="ReLU"):
        in_out_features(torch.nn.ReLU())
