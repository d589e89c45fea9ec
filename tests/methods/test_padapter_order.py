"""PAdapter's forward order against a hand-written reference block.

The reference is the FFN output block of the AdaLoRA code the DCFT authors forked
(QingruZhang/AdaLoRA, NLU/src/transformers/models/deberta_v2/modeling_deberta_v2.py,
`DebertaV2Output.forward`, adapter_type 'pfeiffer'), written out here with plain tensor maths:

    h = dropout(dense(x)); residual = h
    a = LayerNorm(h + input)                      # the block's own LayerNorm, before the adapter
    h = up(relu(down(a))) + residual
    out = LayerNorm(h + input)

A bug it catches: the adapter fed the raw dense output (this harness's first version), or the
adapter's residual taken after the LayerNorm.
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model
from dcft.methods import build_method


def _layer_norm(v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + eps) * weight + bias


def _reference_block(block, adapter_params: dict[str, torch.Tensor], x: torch.Tensor, inp: torch.Tensor):
    W, b = block.dense.weight, block.dense.bias
    ln_w, ln_b, eps = block.LayerNorm.weight, block.LayerNorm.bias, block.LayerNorm.eps
    h = x @ W.T + b  # eval mode: dropout is the identity
    a = _layer_norm(h + inp, ln_w, ln_b, eps)
    down = torch.relu(a @ adapter_params["down.weight"].T + adapter_params["down.bias"])
    h = down @ adapter_params["up.weight"].T + adapter_params["up.bias"] + h
    return _layer_norm(h + inp, ln_w, ln_b, eps)


def _randomise_adapters(model) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".adapter." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _adapted_block(family: str, cfg: dict, layer: int, block_name: str, adapter_at: str):
    """A tiny model's block with randomised adapters, the adapter's parameters, and random block inputs."""
    model = tiny_model(family)
    build_method(cfg).apply(model)
    _randomise_adapters(model)
    block = model.base_model.encoder.layer[layer].get_submodule(block_name)
    adapter = {k: v.detach() for k, v in block.get_submodule(adapter_at).adapter.named_parameters()}
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, block.dense.in_features, generator=g)
    inp = torch.randn(2, 5, block.dense.out_features, generator=g)
    return block, adapter, x, inp


@pytest.mark.parametrize("family", ["tiny-deberta", "tiny-roberta", "tiny-bert"])
def test_padapter_block_matches_hand_written_reference(family):
    # the FFN output block: dense, dropout, LayerNorm
    block, adapter, x, inp = _adapted_block(family, {"name": "padapter", "bottleneck": 3}, 0, "output", "LayerNorm")
    with torch.no_grad():
        got = block(x, inp)
        want = _reference_block(block, adapter, x, inp)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_padapter_dense_input_is_the_other_named_choice():
    """`input=dense` keeps the old order (adapter on the raw dense output); it differs from the reference."""
    block, adapter, x, inp = _adapted_block("tiny-deberta", {"name": "padapter", "bottleneck": 3, "input": "dense"},
                                            0, "output", "dense")
    with torch.no_grad():
        got = block(x, inp)
        h = x @ block.dense.weight.T + block.dense.bias
        h = h + torch.relu(h @ adapter["down.weight"].T + adapter["down.bias"]) @ adapter["up.weight"].T + adapter["up.bias"]
        dense_ref = _layer_norm(h + inp, block.LayerNorm.weight, block.LayerNorm.bias, block.LayerNorm.eps)
        pfeiffer_ref = _reference_block(block, adapter, x, inp)
    torch.testing.assert_close(got, dense_ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, pfeiffer_ref, atol=1e-3)


def test_padapter_starts_as_the_identity_and_keeps_backbone_names(tokens):
    base = tiny_model("tiny-deberta")
    adapted = tiny_model("tiny-deberta")
    method = build_method({"name": "padapter", "bottleneck": 4})
    method.apply(adapted)
    with torch.no_grad():
        torch.testing.assert_close(adapted(**tokens).logits, base(**tokens).logits)
    names = set(dict(adapted.named_parameters()))
    assert set(dict(base.named_parameters())) <= names  # backbone names unchanged
    own = [n for n, _ in method.own_parameters(adapted)]
    n_layers = len(adapted.base_model.encoder.layer)
    assert len(own) == 4 * n_layers and all(".output.LayerNorm.adapter." in n for n in own)


def test_padapter_input_is_validated():
    with pytest.raises(ValueError, match="input='post'"):
        method = build_method({"name": "padapter", "input": "post"})
        method.apply(tiny_model("tiny-deberta"))


class _HalfDropout(torch.nn.Module):
    """A fixed stand-in for one dropout draw (every unit kept and scaled by 0.5), so the order of dropout
    and adapter shows in the output."""

    def forward(self, h):
        return 0.5 * h


@pytest.mark.parametrize("family", ["tiny-deberta", "tiny-roberta"])
@pytest.mark.parametrize("block_name", ["attention.output", "output"])
def test_hadapter_reads_the_dropped_out_dense_output(family, block_name):
    """AdaLoRA reference (`DebertaV2SelfOutput` / `DebertaV2Output`, adapter_type 'houlsby'):
    h = dropout(dense(x)); h = h + up(swish(down(h))); out = LayerNorm(h + input)."""
    block, adapter, x, inp = _adapted_block(family, {"name": "hadapter", "bottleneck": 3}, 1, block_name, "dropout")
    block.dropout.base = _HalfDropout()
    with torch.no_grad():
        got = block(x, inp)
        h = 0.5 * (x @ block.dense.weight.T + block.dense.bias)
        h = h + torch.nn.functional.silu(h @ adapter["down.weight"].T + adapter["down.bias"]) @ adapter["up.weight"].T \
            + adapter["up.bias"]
        want = _layer_norm(h + inp, block.LayerNorm.weight, block.LayerNorm.bias, block.LayerNorm.eps)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
