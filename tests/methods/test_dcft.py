"""DCFT layer and method (paper Sec. 3, eq. 4): the fast path equals the authors' way, merging,
initialisation, the regulariser, shape and config errors, and what trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY_MODELS, tiny_model
from dcft.methods import build_method, config_class, method_class
from dcft.methods.dcft import DCFT, Config, DCFTLinear, apply_dcft, dcft_layers
from dcft.methods.dcft.layer import shape_error
from dcft.harness.models import iter_linear, resolve_targets


def make_layer(din, dout, kernel, stride=None, rank=1, std=1.0, seed=0, dtype=torch.float64, **kw):
    """A DCFT layer over a random nn.Linear, with A, B, C drawn with a large std so every
    term of the update matters."""
    torch.manual_seed(seed)
    base = nn.Linear(din, dout).to(dtype)
    layer = DCFTLinear(base, kernel=kernel, stride=stride, rank=rank, name="layer", **kw)
    with torch.no_grad():
        for p in (layer.A, layer.B, layer.C):
            p.normal_(0.0, std)
    return layer


def delta_by_definition(layer: DCFTLinear) -> torch.Tensor:
    """Delta[i*s+p, j*s+q] += F[i, j] C[p, q], written out as loops (the transposed convolution)."""
    f, c, s, d = layer.subspace().detach(), layer.C.detach(), layer.stride, layer.kernel
    out = torch.zeros(layer.in_features, layer.out_features, dtype=f.dtype)
    for i in range(f.shape[0]):
        for j in range(f.shape[1]):
            out[i * s:i * s + d, j * s:j * s + d] += f[i, j] * c
    return out


# (din, dout, kernel, stride) for the fast == reference checks
SQUARE_KERNELS = [(din, dout, d, d) for d in (2, 4, 6, 8, 12) for din, dout in ((48, 96), (96, 48), (3 * d, 5 * d))]
OVERLAP = [(din, dout, 8, s) for s in (1, 2, 4) for din, dout in ((48, 96), (96, 48), (8 + 3 * s, 8 + 7 * s))]


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("din,dout,kernel,stride", SQUARE_KERNELS + OVERLAP)
def test_fast_equals_reference_outputs_and_gradients(din, dout, kernel, stride, rank):
    layer = make_layer(din, dout, kernel, stride, rank)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, din, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 5, dout, generator=g, dtype=torch.float64)
    results = {}
    for impl in ("reference", "fast"):
        layer.impl = impl
        y = layer(x)
        grads = torch.autograd.grad(y, (x, layer.A, layer.B, layer.C), upstream)
        results[impl] = (y.detach(), *grads)
    for name, ref, fast in zip(("y", "x", "A", "B", "C"), results["reference"], results["fast"]):
        torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10, msg=f"d/d{name} differs")


@pytest.mark.parametrize("din,dout,kernel,stride", [(48, 96, 8, 8), (96, 48, 6, 6), (11, 15, 8, 1), (14, 22, 8, 2),
                                                    (20, 36, 8, 4), (48, 96, 8, 4)])
@pytest.mark.parametrize("rank", [1, 2])
def test_delta_is_the_transposed_convolution_and_the_fast_factors(din, dout, kernel, stride, rank):
    layer = make_layer(din, dout, kernel, stride, rank)
    delta = layer.delta().detach()
    assert delta.shape == (din, dout)
    torch.testing.assert_close(delta, delta_by_definition(layer), rtol=1e-12, atol=1e-12)
    m, g = layer.factors()
    assert m.shape == (din, rank * kernel) and g.shape == (rank * kernel, dout)
    torch.testing.assert_close(m @ g, delta, rtol=1e-12, atol=1e-12)
    if stride == kernel:  # the paper's default: Delta = F (x) C
        torch.testing.assert_close(delta, torch.kron(layer.subspace().detach(), layer.C.detach()))


def test_fast_path_accepts_non_contiguous_and_2d_inputs():
    layer = make_layer(48, 96, 8)
    x = torch.randn(5, 3, 48, dtype=torch.float64).transpose(0, 1)  # (3, 5, 48), not contiguous
    layer.impl = "reference"
    ref = layer(x)
    layer.impl = "fast"
    torch.testing.assert_close(layer(x), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer(x[0]), ref[0], rtol=1e-10, atol=1e-10)


def test_dropout_feeds_the_adapter_only():
    layer = make_layer(48, 96, 8, dropout=0.5)
    x = torch.randn(4, 48, dtype=torch.float64)
    outs = {}
    for impl in ("reference", "fast"):
        layer.impl = impl
        layer.train()
        torch.manual_seed(3)
        outs[impl] = layer(x)
    torch.testing.assert_close(outs["fast"], outs["reference"], rtol=1e-10, atol=1e-10)
    torch.manual_seed(3)
    expected = layer.base(x) + layer.scaling * (F.dropout(x, 0.5, training=True) @ layer.delta())
    torch.testing.assert_close(outs["fast"], expected, rtol=1e-10, atol=1e-10)
    layer.eval()  # no dropout at evaluation
    torch.testing.assert_close(layer(x), layer.base(x) + layer.scaling * (x @ layer.delta()), rtol=1e-10, atol=1e-10)


def test_scaling_is_the_authors():
    layer = make_layer(48, 48, 8, alpha=32.0, r=2.0)
    assert layer.scaling == 32.0 / (2.0 + 1e-5)
    assert Config(alpha=16.0, r=8.0).scaling == 16.0 / (8.0 + 1e-5)


# --- merging --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel,stride", [(8, None), (8, 2), (4, None)])
def test_layer_merge_and_unmerge(kernel, stride):
    layer = make_layer(48, 96, kernel, stride, std=0.5)
    x = torch.randn(7, 48, dtype=torch.float64)
    w0 = layer.base.weight.detach().clone()
    y = layer(x)
    assert not torch.allclose(y, layer.base(x))  # the update is not negligible here
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer.base.weight, w0 + layer.scaling * layer.delta().detach().t())
    torch.testing.assert_close(layer(x), y, rtol=1e-10, atol=1e-10)
    layer.merge()  # a second merge is a no-op
    torch.testing.assert_close(layer(x), y, rtol=1e-10, atol=1e-10)
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer.base.weight, w0, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer(x), y, rtol=1e-10, atol=1e-10)


def _perturb(model: nn.Module, method: DCFT, std: float = 0.3, seed: int = 5) -> None:
    """Give A, B, C values large enough for the update to change the model's outputs."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for _, p in method.own_parameters(model):
            p.normal_(0.0, std)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_model_merge_matches_unmerged(name, tokens):
    base_logits = tiny_model(name)(**tokens).logits
    model = tiny_model(name)
    method = apply_dcft(model, kernel=8)
    _perturb(model, method)
    weights = {n: m.base.weight.detach().clone() for n, m in dcft_layers(model)}
    with torch.no_grad():
        y = model(**tokens).logits
        assert not torch.allclose(y, base_logits, atol=1e-4)
        method.merge(model)
        assert all(m.merged for _, m in dcft_layers(model))
        torch.testing.assert_close(model(**tokens).logits, y, rtol=1e-5, atol=1e-5)
        method.unmerge(model)
        torch.testing.assert_close(model(**tokens).logits, y, rtol=1e-5, atol=1e-5)
    for n, m in dcft_layers(model):
        torch.testing.assert_close(m.base.weight, weights[n], rtol=0, atol=1e-6)


# --- initialisation ------------------------------------------------------------------------------
def test_normal_init_gives_nonzero_delta_at_step_0():
    torch.manual_seed(0)
    layer = DCFTLinear(nn.Linear(48, 96), kernel=8)
    assert layer.delta().abs().max() > 0
    for p in (layer.A, layer.B, layer.C):
        assert 0.005 < p.detach().std() < 0.05  # N(0, 0.02)
    x = torch.randn(4, 48)
    assert not torch.equal(layer(x), layer.base(x))


@pytest.mark.parametrize("stride", [None, 2])
def test_zero_init_starts_at_delta_0_and_then_moves(stride):
    torch.manual_seed(0)
    layer = DCFTLinear(nn.Linear(48, 96), kernel=8, stride=stride, init="zero")
    x, target = torch.randn(6, 48), torch.randn(6, 96)
    assert torch.count_nonzero(layer.delta()) == 0
    assert torch.equal(layer(x), layer.base(x))
    assert layer.A.detach().abs().max() > 0 and layer.B.detach().abs().max() > 0  # only C starts at 0
    opt = torch.optim.SGD([layer.A, layer.B, layer.C], lr=0.1)
    loss = ((layer(x) - target) ** 2).mean()
    loss.backward()
    assert layer.C.grad.abs().max() > 0  # dL/dC = correlation of F = A^T B^T with dL/dDelta
    opt.step()
    with torch.no_grad():
        assert (layer(x) - layer.base(x)).abs().max() > 0



@pytest.mark.parametrize("stride", [None, 2])
def test_lora_init_starts_at_delta_0_with_fan_in_scales_and_b_moves_first(stride):
    torch.manual_seed(0)
    layer = DCFTLinear(nn.Linear(384, 1536), kernel=8, stride=stride, init="lora")
    din_sub = (384 - 8) // layer.stride + 1
    assert layer.A.shape == (1, din_sub)
    assert torch.count_nonzero(layer.B) == 0 and torch.count_nonzero(layer.delta()) == 0
    # U(-b, b) has max |x| <= b and std b / sqrt(3); b = 1 / sqrt(fan-in) (LoRA's kaiming_uniform(a=sqrt(5)))
    for p, fan_in in ((layer.A, din_sub), (layer.C, 8)):
        bound = fan_in ** -0.5
        assert p.detach().abs().max() <= bound
        assert p.detach().std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.35)
    x, target = torch.randn(6, 384), torch.randn(6, 1536)
    assert torch.equal(layer(x), layer.base(x))
    ((layer(x) - target) ** 2).mean().backward()
    assert layer.B.grad.abs().max() > 0  # B takes the first gradient, as LoRA's B
    assert torch.count_nonzero(layer.A.grad) == 0 and torch.count_nonzero(layer.C.grad) == 0

# --- the orthogonal regulariser (eq. 4) ----------------------------------------------------------------
def test_extra_loss_by_hand():
    # (24 -> 16, d = 8): din' = 3, dout' = 2
    l1 = DCFTLinear(nn.Linear(24, 16), kernel=8, rank=1)
    l2 = DCFTLinear(nn.Linear(24, 16), kernel=8, rank=2)
    with torch.no_grad():
        l1.A.copy_(torch.tensor([[1.0, 2.0, 2.0]]))  # ||a||^2 = 9: |9 - 1| = 8
        l1.B.copy_(torch.tensor([[0.6], [0.8]]))  # ||b||^2 = 1: 0
        l2.A.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))  # A A^T - I = [[1, 1], [1, 1]]: 2
        l2.B.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))  # B^T B - I = diag(3, 0): 3
    ta, tb = l1.orth_terms()
    assert ta.item() == pytest.approx(8.0) and tb.item() == pytest.approx(0.0, abs=1e-6)
    ta, tb = l2.orth_terms()
    assert ta.item() == pytest.approx(2.0) and tb.item() == pytest.approx(3.0)
    model = nn.Sequential(l1, l2)
    loss = DCFT(Config(reg_orth_coef=0.1)).extra_loss(model)
    assert loss.item() == pytest.approx(0.1 * (8 + 0 + 2 + 3) / 4)
    loss.backward()
    assert l1.A.grad is not None and l1.A.grad.abs().max() > 0 and l1.C.grad is None  # C is not regularised
    assert DCFT(Config(reg_orth_coef=0.0)).extra_loss(model) is None
    assert DCFT(Config()).extra_loss(nn.Linear(3, 3)) is None  # nothing adapted


# --- errors -------------------------------------------------------------------------------------------
def test_layer_shape_error_names_module_sizes_and_working_values():
    with pytest.raises(ValueError) as e:
        DCFTLinear(nn.Linear(48, 96), kernel=5, name="encoder.layer.0.x")
    msg = str(e.value)
    for part in ("'encoder.layer.0.x'", "din=48", "dout=96", "kernel=5", "stride=5",
                 "kernel=stride in {1, 2, 3, 4, 6, 8, 12, 16, 24, 48}"):
        assert part in msg, (part, msg)
    with pytest.raises(ValueError, match=r"with kernel=8: stride in \{1, 2, 4, 8\}") as e:
        DCFTLinear(nn.Linear(48, 96), kernel=8, stride=3, name="m")
    assert "din - kernel = 40 is not divisible by stride 3" in str(e.value)
    with pytest.raises(ValueError, match=r"'small' \(din=4, dout=96\).*kernel 8 is larger than the layer"):
        DCFTLinear(nn.Linear(4, 96), kernel=8, name="small")
    with pytest.raises(ValueError, match=r"stride 9 > kernel 8"):
        DCFTLinear(nn.Linear(48, 96), kernel=8, stride=9, name="m")
    assert shape_error("m", 768, 3072, 8, 1) is None


def test_method_reports_every_failing_module_before_changing_anything(tokens):
    model = tiny_model("tiny-deberta")
    before = model(**tokens).logits
    method = DCFT(Config(kernel=8, stride=5))  # 48 -> 48 fits; 48 -> 96 and 96 -> 48 do not
    with pytest.raises(ValueError) as e:
        method.apply(model)
    msg = str(e.value)
    assert "does not fit 4 of the target modules" in msg
    assert "'deberta.encoder.layer.0.intermediate.dense' (din=48, dout=96)" in msg
    assert "'deberta.encoder.layer.0.output.dense' (din=96, dout=48)" in msg
    assert "kernel=8, stride=5" in msg and "with kernel=8: stride in {1, 2, 4, 8}" in msg
    assert not dcft_layers(model)
    assert all(p.requires_grad for p in model.parameters())  # nothing frozen either
    torch.testing.assert_close(model(**tokens).logits, before)


def test_applying_twice_is_an_error():
    model = tiny_model("tiny-bert")
    apply_dcft(model, kernel=8)
    with pytest.raises(ValueError, match="already has DCFT layers"):
        apply_dcft(model, kernel=8)


@pytest.mark.parametrize("key,value,valid", [
    ("name", "lora", "'dcft'"), ("kernel", 0, ">= 1"), ("kernel", "8", "integer"), ("kernel", 2.0, "integer"),
    ("stride", 0, ">= 1"), ("stride", 9, "1..2"), ("rank", 0, ">= 1"), ("alpha", float("nan"), "finite"),
    ("r", -1e-5, "r >= 0"), ("dropout", 1.0, "0 <= dropout < 1"), ("dropout", -0.1, "0 <= dropout < 1"),
    ("init", "zeros", "normal, zero"), ("init_std", 0.0, "> 0"), ("reg_orth_coef", -0.1, ">= 0"),
    ("impl", "slow", "fast, reference"), ("targets", "q[kv", "all, qk, qv, qkv, qkvo"), ("targets", [], "suffixes"),
])
def test_config_errors_name_key_value_and_valid_values(key, value, valid):
    with pytest.raises(ValueError) as e:
        Config(**{key: value})
    msg = str(e.value)
    assert f"method.{key}={value!r}" in msg and valid in msg, msg


def test_registry_and_hydra_schema():
    from omegaconf import OmegaConf

    assert method_class("dcft") is DCFT and config_class("dcft") is Config
    schema = OmegaConf.structured(Config)
    node = OmegaConf.merge(schema, {"kernel": 4, "stride": 2, "targets": "qv"})
    method = build_method(node)
    assert isinstance(method, DCFT) and method.cfg.kernel == 4 and method.cfg.step == 2 and method.targets == "qv"
    with pytest.raises(ValueError, match="method.stride=5"):
        build_method(OmegaConf.merge(schema, {"kernel": 4, "stride": 5}))


# --- parameter counts --------------------------------------------------------------------------------
def formula(model: nn.Module, targets: str, kernel: int, stride: int, rank: int) -> int:
    total = 0
    for _, m in iter_linear(model, resolve_targets(model, targets)):
        din_s = (m.in_features - kernel) // stride + 1
        dout_s = (m.out_features - kernel) // stride + 1
        total += rank * din_s + rank * dout_s + kernel * kernel
    return total


@pytest.mark.parametrize("kernel,stride,rank,targets", [
    *[(d, d, 1, "all") for d in (2, 4, 6, 8, 12)], (8, 1, 1, "all"), (8, 2, 1, "all"), (8, 4, 2, "all"),
    (4, 4, 2, "qkvo"), (8, 8, 1, "qv")])
def test_count_equals_formula_on_tiny_models(tiny, kernel, stride, rank, targets):
    expected = formula(tiny, targets, kernel, stride, rank)
    n_targets = len(resolve_targets(tiny, targets))
    method = apply_dcft(tiny, targets=targets, kernel=kernel, stride=stride, rank=rank)
    counts = method.count(tiny)
    assert counts.method == expected
    assert len(dcft_layers(tiny)) == n_targets
    assert counts.trainable == sum(p.numel() for p in tiny.parameters() if p.requires_grad)


# --- what trains --------------------------------------------------------------------------------------
def test_only_adapter_and_head_train_and_frozen_weights_stay_bit_identical(tiny, tokens):
    method = apply_dcft(tiny, kernel=4)
    trainable = {n for n, p in tiny.named_parameters() if p.requires_grad}
    own = {n for n, _ in method.own_parameters(tiny)}
    head = {n for n, _ in method.head_parameters(tiny)}
    assert trainable == own | head and own and head and not own & head
    assert all(n.rsplit(".", 1)[1] in ("A", "B", "C") for n in own)
    frozen = {n: p.detach().clone() for n, p in tiny.named_parameters() if not p.requires_grad}
    moving = {n: p.detach().clone() for n, p in tiny.named_parameters() if p.requires_grad}
    tiny.train()
    opt = method.optimizer(tiny, lr=1e-2, weight_decay=0.1)
    loss = tiny(**tokens, labels=torch.tensor([0, 1, 1])).loss + method.extra_loss(tiny)
    loss.backward()
    opt.step()
    for n, p in tiny.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
            assert p.grad is None, n
        else:
            assert not torch.equal(p, moving[n]), n
