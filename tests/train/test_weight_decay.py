"""Weight-decay groups of every registered method, pinned.

The rule (HF Trainer, which the authors' scripts ran): no weight decay on biases and LayerNorm
weights; decay on every other trainable tensor. SoRA's gates are exempt too: the reference trains
them with their own optimizer (an AdamW step without weight decay at `sparse_lr`, then the proximal
soft-threshold), `dcft/methods/sora.py` and `baselines.md`; their L1 term and proximal step are the
only pull toward zero they get.

For each method (and both LoRA-FA variants) on tiny DeBERTa and RoBERTa:
1. the optimizer's zero-decay groups hold exactly the trainable biases, LayerNorm weights (found here
   by module type, not by a name list) and SoRA gates; every trainable tensor is in one group;
2. one optimizer step with all-zero gradients (Adam's update is then exactly 0) multiplies every
   decayed tensor by (1 - lr * wd) and leaves every other tensor bit-identical (SoRA's gates: only the
   proximal shift by xi, no decay factor). Parameters are set to random non-zero values first, so a
   bias (zero at init) that is wrongly decayed would move.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_model
from dcft.methods import REGISTRY, build_method

LR, WD = 0.1, 0.5  # decay factor 0.95: far from any rounding
CASES = {name: {"name": name} for name in REGISTRY}
CASES["adalora"] = {"name": "adalora", "tinit": 5, "tfinal": 2, "init_r": 3, "target_r": 1}
CASES["lorafa-peft"] = {"name": "lorafa", "variant": "peft_optimizer"}
CASES["dcft"] = {"name": "dcft", "kernel": 4}


def exempt(model: nn.Module, name: str, method_name: str) -> bool:
    """Biases, LayerNorm weights (by module type), and SoRA's gates."""
    module_name, _, leaf = name.rpartition(".")
    if leaf == "bias" or isinstance(model.get_submodule(module_name), nn.LayerNorm):
        return True
    return method_name == "sora" and leaf == "sora_gate"


@pytest.mark.parametrize("family", ["tiny-deberta", "tiny-roberta"])
@pytest.mark.parametrize("case", list(CASES))
def test_decay_groups_and_one_zero_gradient_step(case, family):
    cfg = CASES[case]
    model = tiny_model(family)
    method = build_method(cfg)
    method.apply(model)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = {id(p): n for n, p in model.named_parameters()}
    want_exempt = {n for n in trainable if exempt(model, n, cfg["name"])}
    assert want_exempt and set(trainable) - want_exempt  # both kinds exist in every case

    opt = method.optimizer(model, LR, WD)
    wd_of: dict[str, float] = {}
    for g in opt.param_groups:
        for p in g["params"]:
            n = names[id(p)]
            assert n not in wd_of, f"{n} is in two groups"
            wd_of[n] = g["weight_decay"]
    assert set(trainable) <= set(wd_of), f"not optimized: {sorted(set(trainable) - set(wd_of))[:5]}"
    assert {n for n in trainable if wd_of[n] == 0.0} == want_exempt
    assert {wd_of[n] for n in trainable if n not in want_exempt} == {WD}

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainable.values():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)  # in [0.5, 1.5): non-zero, above xi
            p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    xi = getattr(method.cfg, "sparse_lambda_2", 0.0)
    for n, p in model.named_parameters():
        if n in trainable and n not in want_exempt:
            torch.testing.assert_close(p.detach(), before[n] * (1 - LR * WD), rtol=1e-6, atol=0,
                                       msg=lambda m: f"{n} not decayed by (1 - lr wd): {m}")
        elif cfg["name"] == "sora" and n.endswith("sora_gate"):
            assert torch.equal(p, before[n] - xi), f"gate {n}: expected only the proximal shift"
        else:
            assert torch.equal(p, before[n]), f"{n} changed"
