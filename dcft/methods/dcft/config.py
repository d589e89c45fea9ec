"""The DCFT method's configuration: the Hydra schema `schemas/method/dcft` that `conf/method/dcft.yaml`
extends, validated on construction so a bad value fails before any model is touched.

Defaults follow the paper (Zhang et al., COLING 2025, Sec. 3 and Sec. 4) and the authors' code:
kernel d = 2 with stride s = d (what the authors' code computes: it is hard-wired to kernel 2, the
paper's best-scoring "DCFT †" row; `kernel=8` is the paper's most efficient "DCFT Δ" row), subspace rank k = 1,
scaling alpha / (r + 1e-5) with alpha = 32, r = 2, and N(0, 0.02) initialisation of A, B and C.
"""

from dataclasses import asdict, dataclass
from typing import Any, Optional

INITS = ("normal", "zero", "lora")
IMPLS = ("fast", "reference")


@dataclass
class Config:
    """Hyperparameters of DCFT (paper Sec. 3); one field per key of `conf/method/dcft.yaml`."""

    name: str = "dcft"  # registry key; must be "dcft"
    kernel: int = 2  # kernel size d of the transposed convolution (paper "kernel": 2, 4, 6, 8, 12)
    stride: Optional[int] = None  # stride s (paper "step"), 1 <= s <= d; None means s = d (no overlap, paper default)
    rank: int = 1  # rank k of the subspace matrix F = A^T B^T (paper: k = 1)
    alpha: float = 32.0  # scaling numerator: the update is scaled by alpha / (r + 1e-5), as in the authors' code
    r: float = 2.0  # scaling denominator kept from the authors' AdaLoRA command line; sets no shape
    dropout: float = 0.0  # dropout probability on the layer input feeding the adapter (0 = none, as the authors)
    init: str = "normal"  # "normal": A, B, C ~ N(0, init_std) as the authors (Delta != 0 at step 0); "zero": C = 0, so Delta = 0 at step 0; "lora": B = 0, A and C at fan-in scale (Delta = 0, LoRA-like scales)
    init_std: float = 0.02  # standard deviation of the normal initialisation of A, B (and C unless init="zero")
    reg_orth_coef: float = 0.1  # gamma, weight of the orthogonal regulariser on A and B (paper eq. 4); 0 disables it
    impl: str = "fast"  # "fast": structured path that never builds Delta; "reference": conv_transpose2d as the authors
    targets: Any = "all"  # target set (all, qk, qv, qkv, qkvo: paper Table 6), list of module-name suffixes, or regex (dcft.harness.models.resolve_targets)

    def __post_init__(self) -> None:
        if self.name != "dcft":
            raise ValueError(f"method.name={self.name!r} is not this method's name; valid: 'dcft'")
        _check_int("kernel", self.kernel, minimum=1)
        if self.stride is not None:
            _check_int("stride", self.stride, minimum=1)
            if self.stride > self.kernel:
                raise ValueError(
                    f"method.stride={self.stride!r} is larger than method.kernel={self.kernel}: the windows of "
                    f"the transposed convolution would leave gaps; valid: 1..{self.kernel}, or null for stride = kernel"
                )
        _check_int("rank", self.rank, minimum=1)
        _check_float("alpha", self.alpha)
        _check_float("r", self.r)
        if self.r + 1e-5 == 0:
            raise ValueError(f"method.r={self.r!r} makes the scaling alpha / (r + 1e-5) divide by zero; use r >= 0")
        _check_float("dropout", self.dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"method.dropout={self.dropout!r} is not a probability; valid: 0 <= dropout < 1")
        if self.init not in INITS:
            raise ValueError(f"method.init={self.init!r} is not known; valid: {', '.join(INITS)}")
        _check_float("init_std", self.init_std)
        if not self.init_std > 0:
            raise ValueError(f"method.init_std={self.init_std!r} must be > 0 (A and B need a random start)")
        _check_float("reg_orth_coef", self.reg_orth_coef)
        if self.reg_orth_coef < 0:
            raise ValueError(f"method.reg_orth_coef={self.reg_orth_coef!r} must be >= 0 (0 disables the regulariser)")
        if self.impl not in IMPLS:
            raise ValueError(f"method.impl={self.impl!r} is not known; valid: {', '.join(IMPLS)}")
        from dcft.harness.models import check_targets

        try:
            check_targets(self.targets)
        except ValueError as e:
            raise ValueError(f"method.{e}") from None

    @property
    def step(self) -> int:
        """The effective stride s (`stride`, or `kernel` when `stride` is None)."""
        return self.kernel if self.stride is None else self.stride

    @property
    def scaling(self) -> float:
        """The update's scale, alpha / (r + 1e-5), exactly as the authors' code computes it."""
        return self.alpha / (self.r + 1e-5)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-serialisable)."""
        return asdict(self)


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"method.{key}={value!r} is not an integer; valid: an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"method.{key}={value!r} is too small; valid: an integer >= {minimum}")


def _check_float(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"method.{key}={value!r} is not a number")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"method.{key}={value!r} is not a finite number")
