"""Parameter counts ("#Params", head apart) of the baselines on the paper's real architectures, built
on the meta device from conf/model/*.yaml: peft injects on the meta device too (its adapters are
created on the base layer's device), so counts are read from the adapted model itself."""

from __future__ import annotations

import pytest

from conftest import model_cfg
from dcft.methods import build_method
from dcft.harness.models import build_model

DEBERTA_HEAD = (768 * 768 + 768) + (768 * 2 + 2)  # pooler.dense + classifier


def count(model_name: str, **method):
    model = build_model(model_cfg(model_name), device="meta")
    m = build_method(method)
    m.apply(model)
    assert all(p.is_meta for p in model.parameters())
    return m, model, m.count(model)


@pytest.mark.parametrize("model_name,method,expected", [
    ("deberta-v3-base", {"name": "lora", "r": 1, "targets": "all"}, 165_888),  # paper 0.17M
    ("deberta-v3-base", {"name": "bitfit"}, 102_912),  # paper 0.1M
    ("deberta-v3-base", {"name": "hadapter", "bottleneck": 8}, 313_536),  # 24 x 13,064; paper 0.31M
    ("deberta-v3-base", {"name": "padapter", "bottleneck": 16}, 304_320),  # 12 x 25,360; paper 0.3M
    ("deberta-v3-base", {"name": "lorafa", "r": 1, "targets": "all"}, 82_944),  # B only: r x dout
    ("deberta-v3-base", {"name": "sora", "r": 8, "targets": "all"}, 8 * 165_888 + 8 * 72),  # all gates live on meta
    ("deberta-v3-base", {"name": "adalora", "init_r": 2, "targets": "all"}, 2 * 165_888 + 2 * 72),  # P, Λ, Q
    ("roberta-large", {"name": "lora", "r": 8, "targets": "qv"}, 786_432),  # paper 0.8M
    ("roberta-large", {"name": "hadapter", "bottleneck": 8}, 835_968),  # paper 0.8M
    ("roberta-large", {"name": "padapter", "bottleneck": 16}, 811_392),  # paper 0.8M
    ("deberta-v2-xxlarge", {"name": "lora", "r": 16, "targets": "qv"}, 4_718_592),  # paper 4.7M
])
def test_paper_counts(model_name, method, expected):
    _, _, c = count(model_name, **method)
    assert c.method == expected
    if model_name == "deberta-v3-base":
        assert c.head == DEBERTA_HEAD


def test_full_counts_everything_but_the_head():
    plain = build_model(model_cfg("deberta-v3-base"), device="meta")
    total = sum(p.numel() for p in plain.parameters())
    _, _, c = count("deberta-v3-base", name="full")
    assert c.total == total and c.head == DEBERTA_HEAD and c.method == total - DEBERTA_HEAD
    assert 183e6 < c.method < 185e6  # 184M


def test_sora_nominal_equals_live_before_training():
    m, model, c = count("deberta-v3-base", name="sora", r=8)
    assert m.count_nominal(model).method == c.method
