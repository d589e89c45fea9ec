"""DCFT's arithmetic on the device under test (paper Sec. 3): the fast path equals the authors'
reference path, the peft tuner's layer equals the harness layer, and merge -> unmerge gives the
weight back. Each check is a function of the device and dtype that returns verdict rows; they run
on the CPU too (the tests run them there), `python -m dcft.gpu_check` runs them on CUDA.

The layer is DeBERTaV3-base's FFN input projection (768 -> 3072, the paper's model) over 64 tokens.
Adapter values are drawn so that the update is as large as the base output (a bug in it cannot
hide under W0 x), in float64 on the CPU from a fixed seed and then cast, so every device and dtype
sees the same numbers up to that cast. Tolerances: `dcft.gpu_check.tolerance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from dcft.gpu_check.tolerance import Tolerance, excess, merge_bound, tolerance, unit_roundoff
from dcft.gpu_check.verdict import Verdict
from dcft.methods.dcft import ops

LAYER = (768, 3072)  # (din, dout) of DeBERTaV3-base's FFN input projection
TOKENS = 64
SHAPES = ((2, 1), (2, 2), (8, 1), (8, 2), (8, 8))  # kernels 2 and 8 at strides 1, 2, 8 (a stride never exceeds its kernel)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
QUANTITIES = ("y", "dx", "dA", "dB", "dC")
# Stored roundings between the inputs and a compared quantity: at most 6 on either path. Forward,
# the reference path rounds F, Delta, x Delta, its scaling and the sum with W0 x + b (5), the fast
# path M, G, x M and the accumulated output (4); backward, the longest chain, dA (dB alike), rounds on
# the reference path F, Delta, the scaled upstream, x^T times it, the transposed convolution's gradient
# and its product with B (6), on the fast path M, G, the upstream times G^T, x^T times that and the
# transposed convolution's gradient (5). 12 on both paths, counted twice because a reduced-precision
# split-K product (allowed for bf16 / fp16 on CUDA by default) may round each partial sum once more.
FAST_REFERENCE_ROUNDINGS = 24
# The tuner's layer and the harness layer call the same functions (`dcft.methods.dcft.ops`): at
# most one differing rounding on each side (another kernel choice for the base product).
SAME_OPS_ROUNDINGS = 2
# Merged forward against unmerged: W0 + scaling Delta rounded (2: Delta, the sum) and its product
# (1) against the fast path's M, G, x M and the accumulated output (4); doubled as above.
MERGED_FORWARD_ROUNDINGS = 14


@dataclass
class LayerCase:
    """One DCFT layer's tensors and an upstream gradient, on a device, in a dtype."""

    x: torch.Tensor  # (tokens, din) input
    g: torch.Tensor  # (tokens, dout) upstream gradient of the output
    W: torch.Tensor  # (dout, din) frozen base weight (nn.Linear layout)
    b: torch.Tensor  # (dout,) base bias
    A: torch.Tensor  # (rank, din') adapter
    B: torch.Tensor  # (dout', rank)
    C: torch.Tensor  # (kernel, kernel)
    kernel: int
    stride: int
    scaling: float


def draw_case(kernel: int, stride: int, dtype: torch.dtype, device: torch.device | str, din: int = LAYER[0],
              dout: int = LAYER[1], tokens: int = TOKENS, rank: int = 1, scaling: float = 32.0 / (2.0 + 1e-5),
              seed: int = 0) -> LayerCase:
    """Random tensors of a `din -> dout` DCFT layer (the authors' scaling alpha / r = 32 / 2 by
    default). x and the upstream gradient ~ N(0, 1); W ~ N(0, 1/din), b ~ N(0, 0.1^2) (outputs of
    size ~1); A, B, C ~ N(0, sigma^2) with sigma^3 * scaling * sqrt(din) * kernel / stride = 1, so
    the update is of size ~1 too."""
    from dcft.methods.dcft.layer import subspace_size

    g = torch.Generator().manual_seed(seed)
    sigma = (scaling * din ** 0.5 * kernel / stride) ** (-1 / 3)

    def normal(*shape: int, std: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(device=device, dtype=dtype)

    din_sub, dout_sub = subspace_size(din, kernel, stride), subspace_size(dout, kernel, stride)
    return LayerCase(normal(tokens, din), normal(tokens, dout), normal(dout, din, std=din ** -0.5),
                     normal(dout, std=0.1), normal(rank, din_sub, std=sigma), normal(dout_sub, rank, std=sigma),
                     normal(kernel, kernel, std=sigma), kernel, stride, scaling)


def _expression(x, W, b, A, B, C, stride: int, scaling: float) -> torch.Tensor:
    """y = x W^T + b + scaling x Delta(A, B, C): the layer written with the authors' Delta."""
    return x @ W.t() + b + scaling * (x @ ops.delta(A, B, C, stride))


def _terms(case: LayerCase, transform: Callable[[torch.Tensor], torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """y and the gradients of <g, y> with every input replaced by `transform(input)`, in float64."""
    leaves = [transform(t.detach().to(torch.float64)).requires_grad_(True) for t in (case.x, case.A, case.B, case.C)]
    x, A, B, C = leaves
    W, b, g = (transform(t.detach().to(torch.float64)) for t in (case.W, case.b, case.g))
    y = _expression(x, W, b, A, B, C, case.stride, scaling)
    grads = torch.autograd.grad((g * y).sum(), leaves)
    return dict(zip(QUANTITIES, (y.detach(), *grads)))


def squared_terms(case: LayerCase) -> dict[str, torch.Tensor]:
    """For y and each gradient: the sum of the squares of the products summed into each element.
    Every quantity is multilinear (each product holds one entry of each factor), so it is the same
    expression evaluated on the squared inputs with the squared scaling."""
    return _terms(case, torch.square, case.scaling ** 2)


def term_counts(case: LayerCase) -> dict[str, int]:
    """For y and each gradient: the most products summed into one element (the expression on all-ones inputs)."""
    return {k: int(v.max().round()) for k, v in _terms(case, torch.ones_like, 1.0).items()}


def harness_layer(case: LayerCase, impl: str) -> nn.Module:
    """The harness's `DCFTLinear` over an `nn.Linear` holding W, b, with the case's A, B, C."""
    from dcft.methods.dcft import DCFTLinear

    dout, din = case.W.shape
    base = nn.Linear(din, dout, device=case.W.device, dtype=case.W.dtype)
    layer = DCFTLinear(base, kernel=case.kernel, stride=case.stride, rank=case.A.shape[0], impl=impl, name="check")
    with torch.no_grad():
        for name, value in (("base.weight", case.W), ("base.bias", case.b), ("A", case.A), ("B", case.B),
                            ("C", case.C)):
            layer.get_parameter(name).copy_(value)
    layer.scaling = case.scaling
    return layer


def peft_layer(case: LayerCase, impl: str) -> nn.Module:
    """The peft tuner's `DcftLinear` (adapter "default") over an `nn.Linear` holding W, b, with the case's A, B, C."""
    from dcft.methods.dcft.config import Config
    from dcft.methods.dcft.tuner import DcftLinear

    dout, din = case.W.shape
    base = nn.Linear(din, dout, device=case.W.device, dtype=case.W.dtype)
    with torch.no_grad():
        base.weight.copy_(case.W)
        base.bias.copy_(case.b)
    layer = DcftLinear(base, "default", Config(kernel=case.kernel, stride=case.stride, rank=case.A.shape[0], impl=impl),
                       name="check")
    with torch.no_grad():
        for name, value in (("A", case.A), ("B", case.B), ("C", case.C)):
            getattr(layer, f"dcft_{name}")["default"].copy_(value)
    layer.dcft_scaling["default"] = case.scaling
    return layer


def adapter_tensors(layer: nn.Module) -> tuple[torch.Tensor, ...]:
    """(A, B, C) of a harness or peft DCFT layer."""
    if hasattr(layer, "dcft_A"):
        return tuple(getattr(layer, f"dcft_{n}")["default"] for n in "ABC")
    return layer.A, layer.B, layer.C


def quantities(layer: nn.Module, case: LayerCase) -> dict[str, torch.Tensor]:
    """The layer's output on x and the gradients of <g, y> for x, A, B, C."""
    x = case.x.detach().clone().requires_grad_(True)
    y = layer(x)
    grads = torch.autograd.grad(y, (x, *adapter_tensors(layer)), case.g)
    return dict(zip(QUANTITIES, (y.detach(), *grads)))


def tf32_active(device: torch.device) -> bool:
    """Whether float32 products or convolutions may run in TF32 here (an Ampere or newer GPU with
    TF32 allowed for cuDNN convolutions or for matrix products)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] < 8:
        return False
    return bool(torch.backends.cudnn.allow_tf32) or torch.get_float32_matmul_precision() != "highest"


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], case: LayerCase, roundings: int,
            tf32: bool) -> tuple[float, dict[str, float], Tolerance]:
    """Largest excess over the tolerance (<= 1 passes) of every quantity, each quantity's, and the
    tolerance with the largest term count."""
    rss = {k: v.sqrt() for k, v in squared_terms(case).items()}
    counts = term_counts(case)
    per, tols = {}, {}
    for k in QUANTITIES:
        tols[k] = tolerance(case.W.dtype, roundings, counts[k], tf32)
        per[k] = excess(a[k], b[k], tols[k].coefficient * rss[k])
    worst = max(tols.values(), key=lambda t: t.terms)
    return max(per.values()), per, worst


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def _measured(per: dict[str, float]) -> str:
    return "excess " + ", ".join(f"{k} {v:.2g}" for k, v in per.items())


def fast_equals_reference(device: torch.device, dtype: torch.dtype, kernel: int, stride: int,
                          layer: tuple[int, int] = LAYER, tokens: int = TOKENS) -> Verdict:
    """The fast path (Delta never built) and the authors' path (Delta by conv_transpose2d) give the
    same output and gradients of x, A, B, C, within the rounding tolerance of `dtype`."""
    case = draw_case(kernel, stride, dtype, device, *layer, tokens)
    tf32 = dtype == torch.float32 and tf32_active(device)
    fast, ref = (quantities(harness_layer(case, impl), case) for impl in ("fast", "reference"))
    worst, per, tol = compare(fast, ref, case, FAST_REFERENCE_ROUNDINGS, tf32)
    return Verdict("kernels", f"fast = reference, {_dtype_name(dtype)}, kernel {kernel} stride {stride}",
                   f"every excess <= 1, {tol.describe()}" + (" (TF32)" if tf32 else ""), _measured(per),
                   "pass" if worst <= 1 else "fail")


def peft_equals_harness(device: torch.device, dtype: torch.dtype, kernel: int = 8, stride: int = 8,
                        layer: tuple[int, int] = LAYER, tokens: int = TOKENS) -> Verdict:
    """The peft tuner's layer and the harness layer with the same tensors give the same output and
    gradients (they call the same functions)."""
    case = draw_case(kernel, stride, dtype, device, *layer, tokens)
    tf32 = dtype == torch.float32 and tf32_active(device)
    tuner, harness = (quantities(make(case, "fast"), case) for make in (peft_layer, harness_layer))
    worst, per, tol = compare(tuner, harness, case, SAME_OPS_ROUNDINGS, tf32)
    return Verdict("tuner", f"peft tuner = harness layer, {_dtype_name(dtype)}, kernel {kernel} stride {stride}",
                   f"every excess <= 1, {tol.describe()}", _measured(per), "pass" if worst <= 1 else "fail")


def merge_round_trip(device: torch.device, dtype: torch.dtype = torch.bfloat16, kernel: int = 8, stride: int = 8,
                     via: str = "harness", layer: tuple[int, int] = LAYER, tokens: int = TOKENS) -> list[Verdict]:
    """Merging gives the unmerged layer's output (within rounding), and merge -> unmerge gives W0
    back within 2 u (|W0| + 2 |scaling Delta|) elementwise (`tolerance.merge_bound`)."""
    case = draw_case(kernel, stride, dtype, device, *layer, tokens)
    layer = (peft_layer if via == "peft" else harness_layer)(case, "fast")
    base = layer.get_base_layer() if via == "peft" else layer.base
    w0 = base.weight.detach().clone()
    with torch.no_grad():
        A, B, C = adapter_tensors(layer)
        update = (case.scaling * ops.delta(A, B, C, case.stride)).t()
        unmerged = layer(case.x)
        layer.merge()
        merged = layer(case.x)
        layer.unmerge()
    rss = squared_terms(case)["y"].sqrt()
    tol = tolerance(dtype, MERGED_FORWARD_ROUNDINGS, term_counts(case)["y"], dtype == torch.float32 and tf32_active(device))
    fwd = excess(merged, unmerged, tol.coefficient * rss)
    back = excess(base.weight, w0, merge_bound(w0, update, dtype))
    name = f"{_dtype_name(dtype)}, {via} layer, kernel {kernel} stride {stride}"
    return [Verdict("merge", f"merged output = unmerged output, {name}", f"excess <= 1, {tol.describe()}",
                    f"excess {fwd:.2g}", "pass" if fwd <= 1 else "fail"),
            Verdict("merge", f"merge -> unmerge restores W0, {name}",
                    f"excess <= 1, |W' - W0| <= 2 u (|W0| + 2 |scaling Delta|), u = {unit_roundoff(dtype):.2g}",
                    f"excess {back:.2g}", "pass" if back <= 1 else "fail")]


Check = tuple[str, str, Callable[[], list[Verdict]]]  # (section, name, function returning the rows)


def kernel_checks(device: torch.device, dtypes: tuple[torch.dtype, ...] = DTYPES,
                  shapes: tuple[tuple[int, int], ...] = SHAPES) -> list[Check]:
    """Every check of this module on `device`, in table order: fast = reference at each dtype and
    (kernel, stride), the tuner against the harness layer (fp32, bf16), merge round trips (bf16)."""
    out: list[Check] = []
    for dtype in dtypes:
        for k, s in shapes:
            out.append(("kernels", f"fast = reference, {_dtype_name(dtype)}, kernel {k} stride {s}",
                        lambda dtype=dtype, k=k, s=s: [fast_equals_reference(device, dtype, k, s)]))
    for dtype in (torch.float32, torch.bfloat16):
        out.append(("tuner", f"peft tuner = harness layer, {_dtype_name(dtype)}",
                    lambda dtype=dtype: [peft_equals_harness(device, dtype)]))
    for via in ("harness", "peft"):
        out.append(("merge", f"merge -> unmerge, bf16, {via} layer",
                    lambda via=via: merge_round_trip(device, torch.bfloat16, via=via)))
    return out
