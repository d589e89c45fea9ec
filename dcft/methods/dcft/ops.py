"""The DCFT arithmetic (paper Sec. 3), once, as functions of the adapter tensors A, B, C.

Both layers that exist, the harness's `DCFTLinear` and the peft tuner's `DcftLinear`, call these
functions and nothing else for the update, so every equality test of one covers the other:

    F     = A^T B^T                                    (din' x dout'; A is k x din', B is dout' x k)
    Delta = ConvTranspose2d(F, C, stride=s, padding=0) (din x dout; C is the d x d kernel)
    out   = base(x) + scaling * (x Delta)

`delta` builds Delta as the authors do (the reference path and merging); `factors` gives the
two thin matrices with `Delta = M G` (M: din x k*d, G: k*d x dout) that the fast path uses and
that make DCFT a LoRA of rank k*d exactly; `add_update` adds `scaling * x Delta` to a base
output by either path. Sizes follow from the tensors: din = (din' - 1) s + d (same for dout).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def full_size(n_sub: int, kernel: int, stride: int) -> int:
    """`n = (n' - 1) s + d`: the size a transposed convolution of a length-n' axis produces."""
    return (n_sub - 1) * stride + kernel


def subspace(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """F = A^T B^T (din' x dout'), F[i, j] = sum_k A[k, i] B[j, k]: the paper's P Q."""
    return A.t() @ B.t()


def delta(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, stride: int) -> torch.Tensor:
    """Delta = ConvTranspose2d(F, C, stride=s, padding=0), shape (din x dout), as the authors build it."""
    f = subspace(A, B)
    return F.conv_transpose2d(f[None, None], C[None, None], stride=stride)[0, 0]


def factors(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, G) with `Delta = M @ G`: M (din x k*d) carries A and C, G (k*d x dout) carries B.

    M[i*s+p, (k, q)] accumulates A[k, i] C[p, q]; G[(k, q), j*s+q] = B[j, k]. For s = d these
    are the Kronecker products A^T (x) C and B^T (x) I_d (Delta = F (x) C); for s < d a 1-D
    transposed convolution of each row of A with C^T (of B with I_d) places the overlapping
    windows. Neither ever has din x dout entries.
    """
    k, din_sub = A.shape
    dout_sub = B.shape[0]
    d, s = C.shape[0], stride
    din, dout = full_size(din_sub, d, s), full_size(dout_sub, d, s)
    if s == d:
        # M[(i, p), (k, q)] = A[k, i] C[p, q];  G[(k, q), (j, q')] = B[j, k] [q == q'] (diag_embed
        # puts B^T on the diagonal of the (q, q') axes: no identity matrix, no product with zeros)
        m = (A.t()[:, None, :, None] * C[None, :, None, :]).reshape(din, k * d)
        g = torch.diag_embed(B.t()[:, :, None].expand(k, dout_sub, d), dim1=1, dim2=3)
        return m, g.reshape(k * d, dout)
    # The two transposed convolutions run in at least float32, outside autocast, and are rounded to the
    # adapter's dtype once: they are small (k*d x din, k*d x dout), and torch's CPU bfloat16 transposed
    # convolution (oneDNN on AMX CPUs, torch 2.13) returns wrong input gradients at stride 1.
    wide = torch.promote_types(A.dtype, torch.float32)
    with _no_autocast(A.device.type):
        a, b, c = A.to(wide), B.to(wide), C.to(wide)
        eye = torch.eye(d, device=C.device, dtype=wide)
        # out[k, q, i*s + p] += A[k, i] * C[p, q]  ->  M^T (k*d x din)
        mt = F.conv_transpose1d(a[:, None, :], c.t()[None], stride=s).reshape(k * d, din)
        # out[k, q, j*s + q'] += B[j, k] * [q == q']  ->  G (k*d x dout)
        g = F.conv_transpose1d(b.t()[:, None, :], eye[None], stride=s).reshape(k * d, dout)
    return mt.t().to(A.dtype), g.to(B.dtype)


def _no_autocast(device_type: str):
    """A context with autocast off on `device_type` (nothing where autocast does not exist)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def add_update(out: torch.Tensor, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               stride: int, scaling: float, impl: str = "fast") -> torch.Tensor:
    """`out + scaling * (x Delta)` for a base output `out` (..., dout) and input `x` (..., din).

    The update is computed in the adapter's dtype (x is cast to A's dtype, as peft's LoRA does, so
    float32 adapters on a bf16 model add a float32-accurate update) and added in out's dtype; when
    all dtypes agree (the harness) nothing is cast. `impl="reference"` builds Delta (din x dout)
    with conv_transpose2d every call, as the authors; `impl="fast"` contracts x with M then G
    (two gemms of rank k*d, `O(N k d (din + dout))`), accumulating onto the base output with one
    `addmm`.
    """
    x = x.to(A.dtype)
    if impl == "reference":
        return out + (scaling * (x @ delta(A, B, C, stride))).to(out.dtype)
    m, g = factors(A, B, C, stride)
    dout = out.shape[-1]
    lead = out.shape[:-1]
    u = x.reshape(-1, m.shape[0]) @ m  # (N, k*d): x contracted with A, times C
    if u.dtype == out.dtype:
        return torch.addmm(out.reshape(-1, dout), u, g, alpha=scaling).view(*lead, dout)
    return out + (scaling * (u @ g)).to(out.dtype).view(*lead, dout)


@torch.no_grad()
def initialise(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, init: str, std: float) -> None:
    """Start values of the adapter tensors, by `init`:

    * `"normal"` (the authors' choice): A, B, C ~ N(0, std), so Delta != 0 at step 0;
    * `"zero"`: A, B ~ N(0, std) and C = 0, so Delta = 0 at step 0; dL/dC is then the correlation of
      F = A^T B^T != 0 with the output gradient, so C moves on the first step and A, B follow;
    * `"lora"` (not in the paper): Delta = 0 at step 0 with LoRA's scales (Hu et al. 2021,
      peft's `LoraLayer.reset_lora_parameters`): B = 0, and A and C uniform at fan-in scale,
      A ~ U(+-1/sqrt(din')) (fan-in din' = A's columns) and C ~ U(+-1/sqrt(d)) (fan-in d), as
      `kaiming_uniform_(a=sqrt(5))` draws LoRA's A. So `x M` (x contracted with A, times C) has the
      scale of LoRA's `x A`, and B, like LoRA's B, takes the first gradient. `std` is unused.
    """
    if init == "lora":
        A.uniform_(-A.shape[1] ** -0.5, A.shape[1] ** -0.5)
        C.uniform_(-C.shape[0] ** -0.5, C.shape[0] ** -0.5)
        B.zero_()
        return
    A.normal_(0.0, std)
    B.normal_(0.0, std)
    if init == "zero":
        C.zero_()
    else:
        C.normal_(0.0, std)


def orth_terms(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(||A A^T - I||_F, ||B^T B - I||_F): one layer's terms of the orthogonal regulariser of
    paper eq. 4, the Frobenius norm itself (not squared), as the authors' code."""
    eye = torch.eye(A.shape[0], device=A.device, dtype=A.dtype)
    ta = torch.linalg.matrix_norm(A @ A.t() - eye, ord="fro")
    tb = torch.linalg.matrix_norm(B.t() @ B - eye, ord="fro")
    return ta, tb


def orth_loss(pairs: list[tuple[torch.Tensor, torch.Tensor]], gamma: float) -> torch.Tensor | None:
    """gamma * (sum of ||A A^T - I||_F + sum of ||B^T B - I||_F) / (number of A's + B's), the
    authors' form of paper eq. 4, over (A, B) pairs; None when gamma = 0 or there are none."""
    if gamma == 0 or not pairs:
        return None
    terms = [t for a, b in pairs for t in orth_terms(a, b)]
    return gamma * torch.stack(terms).sum() / len(terms)
