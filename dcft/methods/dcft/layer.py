"""`DCFTLinear`: a frozen `nn.Linear` (or GPT-2 `Conv1D`) plus the DCFT update (paper Sec. 3).

The arithmetic lives in `dcft.methods.dcft.ops`, shared with the peft tuner's layer.

The update of a layer with input size `din` and output size `dout` is

    F     = A^T B^T                                    (din' x dout', rank k; the paper's P Q)
    Delta = ConvTranspose2d(F, C, stride=s, padding=0) (din x dout; kernel C is d x d)
    y     = x W0^T + b + scaling * (dropout(x) Delta)

with `din' = (din - d)/s + 1`, `dout' = (dout - d)/s + 1`, A stored `k x din'` (the authors'
`lora_A`), B stored `dout' x k` (`lora_B`), C the `d x d` kernel (`lora_C`), and
`scaling = alpha / (r + 1e-5)` as in the authors' code. The orthogonal regulariser of paper
eq. 4 is built from `orth_terms()`.

Two implementations give the same function:

* `impl="reference"` builds the `din x dout` matrix Delta with `conv_transpose2d` every
  forward pass, as the authors do (one extra full-size matmul forward, two backward).
* `impl="fast"` never builds Delta. Writing Delta[i*s+p, j*s+q] += F[i, j] C[p, q] out,
  `x Delta = (x M) G` with two thin matrices,

      M[r, (k, q)] = sum over i*s+p = r of A[k, i] C[p, q]     (din x k*d)   carries A and C,
      G[(k, q), c] = sum over j*s+q = c of B[j, k]             (k*d x dout)  carries B,

  so the update costs two gemms of rank k*d, `O(N k d (din + dout))`, like a LoRA of rank
  k*d. For `s = d` the windows do not overlap and Delta = F (x) C (Kronecker product), so
  M = A^T (x) C and G = B^T (x) I_d are Kronecker products; for `s < d` M and G are built by
  a 1-D transposed convolution of the rows of A (resp. B) with C^T (resp. the identity).
  Building M and G touches only `din*k*d + k*d*dout` numbers; x is used as is (a 2-D view),
  and the update is accumulated onto the base output by one `addmm`.

  Measured on 2 shared CPU threads (768 x 3072 layer, 2048 tokens, float32, forward + backward,
  median of interleaved repeats): s = d at 0.88-1.00x the time of a LoRA r=1 layer (x @ A @ B),
  s < d at 0.97-1.17x, the reference path at 2.2-2.4x. `tests/methods/test_dcft.py` checks that
  both paths agree in outputs and gradients to 1e-10 in float64.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dcft.methods.dcft import ops
from dcft.methods.dcft.config import INITS


# --- shape rules (transposed convolution, padding 0) ----------------------------------------------
def subspace_size(n: int, kernel: int, stride: int) -> int:
    """`n' = (n - d)/s + 1`: the subspace size whose transposed convolution has size `n`."""
    return (n - kernel) // stride + 1


def _fits(n: int, kernel: int, stride: int) -> bool:
    return 1 <= stride <= kernel <= n and (n - kernel) % stride == 0


def _divisors(n: int) -> list[int]:
    small = [i for i in range(1, math.isqrt(n) + 1) if n % i == 0]
    return sorted(set(small + [n // i for i in small]))


def working_settings(din: int, dout: int, kernel: int) -> str:
    """A human-readable list of kernel / stride values that fit a `din -> dout` layer."""
    kernels = _divisors(math.gcd(din, dout))  # stride = kernel: d must divide both sizes
    parts = [f"kernel=stride in {{{', '.join(map(str, kernels))}}}"]
    if kernel <= min(din, dout):
        strides = [s for s in range(1, kernel + 1) if _fits(din, kernel, s) and _fits(dout, kernel, s)]
        if strides:
            parts.append(f"with kernel={kernel}: stride in {{{', '.join(map(str, strides))}}}")
        else:
            parts.append(f"no stride works with kernel={kernel}")
    return "; ".join(parts)


def shape_error(name: str, din: int, dout: int, kernel: int, stride: Optional[int]) -> Optional[str]:
    """Why DCFT with this kernel and stride cannot adapt module `name` (`din -> dout`), or None.

    Delta must have exactly the weight's shape, so `(din - d)` and `(dout - d)` must be
    multiples of `s`, `d <= min(din, dout)` and `1 <= s <= d` (paper Sec. 3).
    """
    s = kernel if stride is None else stride
    where = f"DCFT cannot adapt module {name!r} (din={din}, dout={dout}) with kernel={kernel}, stride={s}"
    if kernel < 1 or s < 1:
        why = "kernel and stride must be positive integers"
    elif s > kernel:
        why = f"stride {s} > kernel {kernel} would leave gaps between the kernel windows"
    elif kernel > min(din, dout):
        why = f"the kernel {kernel} is larger than the layer (min(din, dout) = {min(din, dout)})"
    elif (din - kernel) % s or (dout - kernel) % s:
        bad = [f"{nm} - kernel = {n - kernel} is not divisible by stride {s}"
               for nm, n in (("din", din), ("dout", dout)) if (n - kernel) % s]
        why = (" and ".join(bad) + ", so Delta = ConvTranspose2d(F, C) cannot have the weight's shape "
               "((n - kernel) / stride + 1 must be an integer)")
    else:
        return None
    settings = working_settings(din, dout, kernel) if kernel >= 1 else ""
    return f"{where}: {why}. Settings that work for this module: {settings}"


# --- base layers: nn.Linear (dout x din weight) and GPT-2's Conv1D (din x dout weight) ------------
def base_sizes(base: nn.Module, name: str = "<module>") -> tuple[int, int, bool]:
    """(din, dout, transposed) of a layer DCFT can adapt: `nn.Linear` (weight dout x din) or
    transformers' `Conv1D` (GPT-2; weight din x dout, `transposed=True`). Decided per layer."""
    from dcft.harness.models import in_out_features, is_conv1d

    try:
        din, dout = in_out_features(base)
    except TypeError:
        raise TypeError(f"DCFT adapts nn.Linear and transformers' Conv1D layers; module {name!r} is "
                        f"{type(base).__name__}") from None
    return din, dout, is_conv1d(base)


def oriented(delta: torch.Tensor, transposed: bool) -> torch.Tensor:
    """Delta (din x dout) in the base weight's layout: Delta^T for nn.Linear, Delta for Conv1D."""
    return delta if transposed else delta.t()


# --- the layer ---------------------------------------------------------------------------------------
class DCFTLinear(nn.Module):
    """A frozen `nn.Linear` or GPT-2 `Conv1D` (`self.base`) plus the DCFT update `scaling * x Delta`
    (paper Sec. 3).

    Parameters `A` (k x din', the authors' `lora_A`), `B` (dout' x k, `lora_B`) and `C`
    (d x d, the kernel) are the only trainable tensors: `k*din' + k*dout' + d^2` of them.
    """

    def __init__(self, base: nn.Linear, kernel: int = 2, stride: Optional[int] = None, rank: int = 1,
                 alpha: float = 32.0, r: float = 2.0, dropout: float = 0.0, init: str = "normal",
                 init_std: float = 0.02, impl: str = "fast", name: str = "<linear>"):
        super().__init__()
        din, dout, self.transposed = base_sizes(base, name)
        error = shape_error(name, din, dout, kernel, stride)  # before anything is built
        if error:
            raise ValueError(error)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank={rank!r} for module {name!r}: must be an integer >= 1")
        if impl not in ("fast", "reference"):
            raise ValueError(f"impl={impl!r} for module {name!r}; valid: fast, reference")
        if init not in INITS:
            raise ValueError(f"init={init!r} for module {name!r}; valid: {', '.join(INITS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} for module {name!r}; valid: 0 <= dropout < 1")

        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.name = name
        self.in_features, self.out_features = din, dout
        self.kernel, self.stride, self.rank = kernel, (kernel if stride is None else stride), rank
        self.din_sub = subspace_size(din, kernel, self.stride)
        self.dout_sub = subspace_size(dout, kernel, self.stride)
        self.scaling = alpha / (r + 1e-5)  # as the authors' code: lora_alpha / (r + 1e-5)
        self.init, self.init_std, self.impl = init, init_std, impl
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

        kw = {"device": base.weight.device,
              "dtype": base.weight.dtype if base.weight.is_floating_point() else torch.get_default_dtype()}
        self.A = nn.Parameter(torch.empty(rank, self.din_sub, **kw))  # lora_A: k x din'
        self.B = nn.Parameter(torch.empty(self.dout_sub, rank, **kw))  # lora_B: dout' x k
        self.C = nn.Parameter(torch.empty(kernel, kernel, **kw))  # lora_C: the d x d kernel
        self.reset_parameters()

    @classmethod
    def from_config(cls, base: nn.Linear, cfg, name: str = "<linear>") -> "DCFTLinear":
        """A layer from a `dcft.methods.dcft.Config`."""
        return cls(base, kernel=cfg.kernel, stride=cfg.stride, rank=cfg.rank, alpha=cfg.alpha, r=cfg.r,
                   dropout=cfg.dropout, init=cfg.init, init_std=cfg.init_std, impl=cfg.impl, name=name)

    def reset_parameters(self) -> None:
        """The start values `init` names (`dcft.methods.dcft.ops.initialise`): "normal" (the
        authors', Delta != 0 at step 0), "zero" (C = 0) or "lora" (B = 0, A and C at fan-in scale)."""
        ops.initialise(self.A, self.B, self.C, self.init, self.init_std)

    # --- the update (arithmetic shared with the peft tuner: dcft.methods.dcft.ops) -------------------
    def subspace(self) -> torch.Tensor:
        """F = A^T B^T (din' x dout'), F[i, j] = sum_k A[k, i] B[j, k]: the paper's P Q."""
        return ops.subspace(self.A, self.B)

    def delta(self) -> torch.Tensor:
        """Delta = ConvTranspose2d(F, C, stride=s, padding=0), shape (din x dout), built as
        the authors do (paper Sec. 3). Used by `impl="reference"` and by `merge`."""
        return ops.delta(self.A, self.B, self.C, self.stride)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, G) with `Delta = M @ G` (M: din x k*d, G: k*d x dout); see `ops.factors`."""
        return ops.factors(self.A, self.B, self.C, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.linear on the base weights directly (not `self.base(x)`, a second module call): merged,
        # this is all a DCFT layer does, so a merged model costs what the base model costs.
        out = F.linear(x, self._linear_weight(), self.base.bias)
        if self.merged:
            return out
        return ops.add_update(out, self.dropout(x), self.A, self.B, self.C, self.stride, self.scaling, self.impl)

    def _linear_weight(self) -> torch.Tensor:
        """The base weight in nn.Linear's (dout x din) layout (a view for GPT-2's Conv1D)."""
        w = self.base.weight
        return w.t() if self.transposed else w

    # --- regulariser (paper eq. 4) -------------------------------------------------------------------
    def orth_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(||A A^T - I||_F, ||B^T B - I||_F): this layer's terms of the orthogonal regulariser
        of paper eq. 4, the Frobenius norm itself (not squared), as the authors' code."""
        return ops.orth_terms(self.A, self.B)

    # --- merging -----------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: W <- W0 + scaling * Delta^T (nn.Linear's
        (dout x din) layout; W0 + scaling * Delta for Conv1D's din x dout). While merged, forward is the base layer alone."""
        if self.merged:
            return
        w = self.base.weight
        w.add_(oriented(self.delta(), self.transposed).to(w.dtype), alpha=self.scaling)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge` (W <- W - scaling * Delta^T; exact up to floating-point rounding)."""
        if not self.merged:
            return
        w = self.base.weight
        w.sub_(oriented(self.delta(), self.transposed).to(w.dtype), alpha=self.scaling)
        self.merged = False

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's (frozen) weight, for code that reads `module.weight` (dtype, device)."""
        return self.base.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        """The base layer's bias."""
        return self.base.bias

    def num_parameters(self) -> int:
        """`k*din' + k*dout' + d^2`: the layer's trainable parameters (paper Sec. 3)."""
        return self.A.numel() + self.B.numel() + self.C.numel()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}, "
                f"stride={self.stride}, rank={self.rank}, subspace=({self.din_sub}, {self.dout_sub}), "
                f"scaling={self.scaling:.4g}, impl={self.impl}, merged={self.merged}")
