"""The peft tuner's layer against an independent oracle (the transposed convolution written as
loops, in float64), against the harness's layer (same ops), on nn.Linear and GPT-2 Conv1D;
registration with peft; config errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

import dcft  # noqa: F401  (registers DCFT with peft)
from dcft.methods.dcft import DCFTLinear
from dcft.methods.dcft.config import Config
from dcft.methods.dcft.tuner import DcftConfig, DcftLinear, DcftModel, register


def delta_by_loops(A, B, C, stride):
    """Delta[i*s+p, j*s+q] += F[i, j] C[p, q] with F = A^T B^T, written out (paper Sec. 3)."""
    k, din_sub = A.shape
    dout_sub, d = B.shape[0], C.shape[0]
    out = torch.zeros((din_sub - 1) * stride + d, (dout_sub - 1) * stride + d, dtype=A.dtype)
    for i in range(din_sub):
        for j in range(dout_sub):
            f = sum(A[r, i] * B[j, r] for r in range(k))
            out[i * stride:i * stride + d, j * stride:j * stride + d] += f * C
    return out


def make_pair(base, kernel, stride, rank, impl):
    """A peft DcftLinear and a harness DCFTLinear over copies of `base`, with equal A, B, C."""
    cfg = Config(kernel=kernel, stride=stride, rank=rank, impl=impl)
    peft_layer = DcftLinear(_copy(base), "default", cfg, name="layer")
    harness = DCFTLinear.from_config(_copy(base), cfg, name="layer")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name in "ABC":
            value = torch.randn(getattr(harness, name).shape, generator=g, dtype=torch.float64)
            getattr(harness, name).copy_(value)
            getattr(peft_layer, f"dcft_{name}")["default"].copy_(value)
    return peft_layer, harness


def _copy(module):
    import copy

    return copy.deepcopy(module)


CASES = [(48, 96, 8, None, 1), (96, 48, 8, 4, 2), (11, 15, 8, 1, 1), (20, 36, 8, 4, 1), (24, 24, 6, 6, 2)]


@pytest.mark.parametrize("conv1d", [False, True], ids=["linear", "conv1d"])
@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("din,dout,kernel,stride,rank", CASES)
def test_peft_layer_equals_loops_oracle_and_harness_layer(din, dout, kernel, stride, rank, impl, conv1d):
    torch.manual_seed(0)
    linear = nn.Linear(din, dout).double()
    if conv1d:  # the same function as `linear`, in GPT-2's layout (weight din x dout)
        base = Conv1D(dout, din).double()
        with torch.no_grad():
            base.weight.copy_(linear.weight.t())
            base.bias.copy_(linear.bias)
    else:
        base = linear
    peft_layer, harness = make_pair(base, kernel, stride, rank, impl)
    x = torch.randn(2, 5, din, dtype=torch.float64, requires_grad=True)
    s = stride or kernel
    A, B, C = (getattr(harness, n).detach() for n in "ABC")
    expected = linear(x) + harness.scaling * (x @ delta_by_loops(A, B, C, s))
    y_peft, y_harness = peft_layer(x), harness(x)
    torch.testing.assert_close(y_peft, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_harness, expected, rtol=1e-10, atol=1e-10)
    up = torch.randn_like(y_peft)
    g_peft = torch.autograd.grad(y_peft, [x] + [peft_layer.__getattr__(f"dcft_{n}")["default"] for n in "ABC"], up)
    g_harness = torch.autograd.grad(y_harness, [x, harness.A, harness.B, harness.C], up)
    for a, b in zip(g_peft, g_harness):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # merging adds scaling * Delta in the base layout (Delta^T for Linear, Delta for Conv1D)
    w0 = peft_layer.get_base_layer().weight.detach().clone()
    peft_layer.merge()
    delta = harness.scaling * delta_by_loops(A, B, C, s)
    torch.testing.assert_close(peft_layer.get_base_layer().weight, w0 + (delta if conv1d else delta.t()))
    torch.testing.assert_close(peft_layer(x), expected, rtol=1e-10, atol=1e-10)
    peft_layer.unmerge()
    torch.testing.assert_close(peft_layer.get_base_layer().weight, w0, rtol=0, atol=1e-12)


def test_lora_factors_are_exact_and_rank_k_times_d():
    torch.manual_seed(0)
    peft_layer, harness = make_pair(nn.Linear(20, 36).double(), 8, 4, 2, "fast")
    lora_a, lora_b = peft_layer.lora_factors("default")
    assert lora_a.shape == (16, 20) and lora_b.shape == (36, 16)  # rank k*d = 2*8
    A, B, C = (getattr(harness, n).detach() for n in "ABC")
    torch.testing.assert_close(lora_b @ lora_a, harness.scaling * delta_by_loops(A, B, C, 4).t(),
                               rtol=1e-12, atol=1e-12)


def test_two_adapters_in_one_layer_add_their_updates():
    torch.manual_seed(0)
    base = nn.Linear(16, 32).double()
    layer = DcftLinear(base, "a", Config(kernel=8), name="l")
    layer.update_layer("b", Config(kernel=4, stride=2, alpha=8.0), name="l")
    layer.set_adapter(["a", "b"])
    x = torch.randn(4, 16, dtype=torch.float64)
    expected = base(x)
    for name, scaling in (("a", 32 / (2 + 1e-5)), ("b", 8 / (2 + 1e-5))):
        A, B, C = (layer.__getattr__(f"dcft_{n}")[name].detach() for n in "ABC")
        expected = expected + scaling * (x @ delta_by_loops(A, B, C, layer.dcft_stride[name]))
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_register_is_idempotent_and_refuses_a_clash(monkeypatch):
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    register()
    register()
    assert PEFT_TYPE_TO_CONFIG_MAPPING["DCFT"] is DcftConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["DCFT"] is DcftModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING["DCFT"] == "dcft_"
    monkeypatch.setitem(PEFT_TYPE_TO_TUNER_MAPPING, "DCFT", object)
    with pytest.raises(KeyError, match="already has a method registered as 'DCFT'"):
        register()


def test_import_dcft_registers_when_peft_is_imported_later():
    """The usual order: `import dcft` (light: no peft), then peft; the hook registers DCFT."""
    code = ("import sys; import dcft; assert 'peft' not in sys.modules, 'import dcft must not import peft'; "
            "from peft import PeftConfig; from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING as M; "
            "assert M['DCFT'].__name__ == 'DcftConfig'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_import_dcft_registers_at_once_when_peft_is_already_imported(monkeypatch):
    import importlib

    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    for mapping in (PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING):
        monkeypatch.delitem(mapping, "DCFT")
    importlib.reload(dcft)  # what `import dcft` runs, with peft in sys.modules
    assert PEFT_TYPE_TO_CONFIG_MAPPING["DCFT"] is DcftConfig and PEFT_TYPE_TO_TUNER_MAPPING["DCFT"] is DcftModel


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel": 0}, r"DcftConfig.kernel=0 is too small"),
    ({"kernel": 4, "stride": 5}, r"DcftConfig.stride=5 is larger than DcftConfig.kernel=4"),
    ({"init": "zeros"}, r"DcftConfig.init='zeros' is not known; valid: normal, zero"),
    ({"impl": "slow"}, r"DcftConfig.impl='slow' is not known"),
    ({"kernel_pattern": {"query": 0}}, r"DcftConfig.kernel_pattern\['query'\]=0"),
    ({"target_modules": ".*query", "layers_to_transform": [0]}, r"layers_to_transform"),
])
def test_config_errors_name_the_key_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DcftConfig(**kwargs)


def test_config_is_a_peft_config_with_our_type():
    cfg = DcftConfig(target_modules=["query", "value"])
    assert cfg.peft_type == "DCFT" and cfg.target_modules == {"query", "value"}
    assert cfg.harness_config().scaling == 32.0 / (2.0 + 1e-5)
