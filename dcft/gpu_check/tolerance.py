"""How close two floating-point computations of the same DCFT quantity must be: tolerances derived
from the dtype's unit roundoff and the size of the sums, never picked by hand.

Every quantity the kernel checks compare (a layer's output y and the gradients of x, A, B, C) is a
sum of products of the inputs: y_j = sum_i x_i W_ji + b_j + scaling * sum (x_i A_ki B_jk C_pq) over
the windows that reach (i, j) (paper Sec. 3). Two paths (the fast one and the authors' reference)
compute the same sum with different intermediates, so they differ only by rounding. Under the usual
model of rounding errors as independent, zero-mean, each at most u in relative size (Higham and
Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019):

* rounding a stored intermediate (F, Delta, M, G, x M, ... in the storage dtype) perturbs the result
  by at most u_store times the size of what was rounded; r such roundings add up like a random walk:
  sqrt(r) * u_store * rss;
* accumulating a sum of n terms (in the accumulator's precision: float32 for bf16 / fp16 / fp32
  inputs on CUDA and on the CPU) perturbs it by about sqrt(n) * u_acc * rss;

where rss is the root of the sum of the squared terms of that element (the size the partial sums of
random-signed terms have). So, elementwise,

    |a - b| <= LAMBDA * (sqrt(r) * u_store + sqrt(n) * u_acc) * rss          (with LAMBDA = 8).

LAMBDA = 8 standard deviations: a chance excess has probability below 1e-14 per element, while a
wrong formula (a misplaced window, a missing term, a wrong cast) moves an element by about its own
size, rss. On DeBERTaV3-base's 768 -> 3072 layer over 64 tokens the coefficient is 2e-5 (outputs) to
6e-3 (the kernel's gradient, a sum of up to 1.5e8 products) in float32, about 0.15 in bf16 and 0.02
in fp16: such bugs fail by orders of magnitude in float32, and a gross error fails in every dtype. rss and n are computed exactly, not estimated: every compared quantity is multilinear
in the inputs, so evaluating the same expression in float64 on the squared inputs gives the sum of
squared terms (`dcft.gpu_check.kernels.squared_terms`), and on all-ones inputs gives the number of
terms n.

On CUDA with TF32 allowed (`torch.backends.cudnn.allow_tf32`, on by default, or
`torch.backends.cuda.matmul.allow_tf32`) on an Ampere or newer GPU, float32 convolutions and
products round their inputs to 10 significant bits: u_store is then TF32's 2^-11, not 2^-24.

Merging (W <- W0 + scaling Delta) and unmerging are elementwise, with no sum to model: each of the
two updates rounds its result once (at most u relative), and Delta, rebuilt for the unmerge, may be
rounded differently once more, so |W' - W0| <= 2 u (|W0| + 2 |scaling Delta|) deterministically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LAMBDA = 8.0  # standard deviations of the summed rounding errors a tolerance allows
TF32_UNIT_ROUNDOFF = 2.0 ** -11  # TF32 keeps 10 explicit mantissa bits (11 significant)


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = eps / 2: the largest relative error of rounding one real number to `dtype`
    (float64 2^-53, float32 2^-24, float16 2^-11, bfloat16 2^-8)."""
    return torch.finfo(dtype).eps / 2


def accumulator_roundoff(dtype: torch.dtype) -> float:
    """The unit roundoff sums of `dtype` products accumulate in: float64 in float64, float32 for
    every narrower floating type (CUDA's and the CPU's matrix products and convolutions)."""
    return unit_roundoff(torch.float64 if dtype == torch.float64 else torch.float32)


def storage_roundoff(dtype: torch.dtype, tf32: bool = False) -> float:
    """The unit roundoff of a stored intermediate; float32 under TF32 rounds to TF32's."""
    u = unit_roundoff(dtype)
    return max(u, TF32_UNIT_ROUNDOFF) if tf32 and dtype == torch.float32 else u


@dataclass(frozen=True)
class Tolerance:
    """`|a - b| <= coefficient * rss` elementwise, coefficient = LAMBDA (sqrt(r) u_store + sqrt(n) u_acc)."""

    dtype: str  # e.g. "bfloat16"
    u_store: float  # unit roundoff of stored intermediates
    u_acc: float  # unit roundoff of the accumulator
    roundings: int  # r: stored roundings on both paths together
    terms: int  # n: the most terms summed into one element

    @property
    def coefficient(self) -> float:
        return LAMBDA * (math.sqrt(self.roundings) * self.u_store + math.sqrt(self.terms) * self.u_acc)

    def describe(self) -> str:
        return (f"|diff| <= {self.coefficient:.2g} x rss (8 x (sqrt({self.roundings}) x {self.u_store:.2g} "
                f"+ sqrt({self.terms:,}) x {self.u_acc:.2g}))")


def tolerance(dtype: torch.dtype, roundings: int, terms: int, tf32: bool = False) -> Tolerance:
    """The tolerance of comparing two `dtype` computations with `roundings` stored roundings between
    them and at most `terms` terms summed into one element (see the module doc)."""
    if roundings < 0 or terms < 1:
        raise ValueError(f"roundings={roundings}, terms={terms}: need roundings >= 0 and terms >= 1")
    return Tolerance(str(dtype).removeprefix("torch."), storage_roundoff(dtype, tf32), accumulator_roundoff(dtype),
                     roundings, terms)


def excess(actual: torch.Tensor, reference: torch.Tensor, bound: torch.Tensor) -> float:
    """max |actual - reference| / bound over the elements, computed in float64: <= 1 passes. Where
    the bound is 0 (no term reaches the element) any difference is an infinite excess; NaN or inf in
    either tensor is too."""
    a, b, t = (x.detach().to(torch.float64) for x in (actual, reference, bound))
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.inf
    diff = (a - b).abs()
    ratio = torch.where(t > 0, diff / t.clamp_min(torch.finfo(torch.float64).tiny),
                        torch.where(diff > 0, math.inf, 0.0))
    return float(ratio.max()) if ratio.numel() else 0.0


def merge_bound(w0: torch.Tensor, update: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Elementwise bound on |W' - W0| after merge then unmerge in `dtype`: 2 u (|W0| + 2 |update|),
    `update` = scaling * Delta in the weight's layout (see the module doc)."""
    u = unit_roundoff(dtype)
    return 2 * u * (w0.detach().to(torch.float64).abs() + 2 * update.detach().to(torch.float64).abs())
