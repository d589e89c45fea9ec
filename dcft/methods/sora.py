"""SoRA (Ding et al., EMNLP 2023, "Sparse Low-rank Adaptation of Pre-trained Language Models").

Written in-house (not in peft). Each target linear layer gets a gated low-rank update

    y = W x + b + (alpha / r) · B (g ⊙ (A x))

with A (r × din) kaiming-uniform(a=√5), B (dout × r) zero and a gate vector g (length r) drawn from
N(0, 1), as the reference code (TsinghuaC3I/SoRA, defaults r = 8, alpha = 16).

Training (reference `SparseAdamW` + `SparseTrainer`):

* the loss carries `sparse_lambda · Σ|g| / (number of gate entries)` (`extra_loss`);
* everything trainable but the gates takes an ordinary AdamW step (weight decay except on biases
  and LayerNorm weights); the gates take an AdamW step without weight decay, at `sparse_lr`
  (default: the run's learning rate), followed by the proximal soft-threshold
  `g ← sign(g) · max(|g| − ξ, 0)` with ξ = `sparse_lambda_2`, NOT multiplied by the learning rate.
  Both run inside ONE optimizer, `ProximalAdamW` (a `torch.optim.AdamW` whose parameter groups may
  carry a `prox_threshold`), so the loop steps, zeroes, schedules and checkpoints it like any other;
  the LR scheduler scales both groups alike, as the reference's two schedulers of the same shape did.
  (The reference applies the threshold with three sequential in-place masks, which also zeroes
  entries that land in (0, ξ) after the first shift; the textbook operator is used here.)

A rank whose gate is exactly 0 is dead. The paper's parameter count keeps only live ranks:
`live · (din + dout) + live` per matrix (`count`); `count_nominal` counts what is allocated.
`prune` removes dead ranks for inference (same outputs as the gated model); `merge` folds the gated
update into W.

Backbone parameter names are unchanged: an adapted layer is still an `nn.Linear` subclass holding the
original `weight` / `bias` Parameters, with `sora_A`, `sora_B`, `sora_gate` beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from dcft.methods.base import NO_DECAY_KEYS, Method, ParamCount
from dcft.harness.models import get_submodule_parent, iter_linear, resolve_targets


@dataclass
class Config:
    """SoRA (Ding et al. 2023): LoRA with a gate vector made sparse by a proximal step."""

    name: str = "sora"  # registry key
    targets: Any = "all"  # target set (all, qk, qv, qkv, qkvo), list of module-name suffixes, or regex (dcft.harness.models.resolve_targets)
    r: int = 8  # maximal rank of every adapted matrix (reference --lora_r 8)
    alpha: float = 16.0  # scaling numerator: update scaled by alpha / r, r the initial rank (reference lora_alpha 16)
    dropout: float = 0.0  # dropout probability on the adapter's input x
    sparse_lambda: float = 10.0  # weight of the L1 loss term sparse_lambda * sum|g| / #gate entries (reference --sparse_lambda 10)
    sparse_lambda_2: float = 3.0e-4  # proximal threshold xi applied to the gates after each step, absolute (not x lr) (reference --sparse_lambda_2 3e-4)
    sparse_lr: Optional[float] = None  # learning rate of the gates; null = the run's learning rate (reference --sparse_lr default)


# --- the layer --------------------------------------------------------------------------------------------
class SoRALinear(nn.Linear):
    """`nn.Linear` plus `(alpha / r) · B (g ⊙ (A x))`; keeps the base layer's Parameters and names."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        w = base.weight
        self.sora_A = nn.Parameter(torch.empty(r, self.in_features, device=w.device, dtype=w.dtype))
        self.sora_B = nn.Parameter(torch.zeros(self.out_features, r, device=w.device, dtype=w.dtype))
        self.sora_gate = nn.Parameter(torch.randn(r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.sora_A, a=math.sqrt(5))
        self.scaling = alpha / r  # fixed at the initial rank: pruning dead ranks does not rescale
        self.sora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def rank(self) -> int:
        return self.sora_gate.shape[0]

    def live_mask(self) -> torch.Tensor:
        return self.sora_gate != 0

    def delta_weight(self) -> torch.Tensor:
        """`(alpha / r) · B diag(g) A`, shape (dout, din)."""
        return self.scaling * (self.sora_B @ (self.sora_gate[:, None] * self.sora_A))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.merged or self.rank == 0:
            return y
        h = F.linear(self.sora_dropout(x), self.sora_A) * self.sora_gate
        return y + F.linear(h, self.sora_B) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight.sub_(self.delta_weight())
            self.merged = False

    @torch.no_grad()
    def prune(self) -> int:
        """Drop the ranks whose gate is exactly 0; returns how many were dropped."""
        keep = self.live_mask()
        dropped = int((~keep).sum())
        if dropped:
            self._set(self.sora_A[keep].clone(), self.sora_B[:, keep].clone(), self.sora_gate[keep].clone())
        return dropped

    def resize(self, r: int) -> None:
        """Re-allocate for rank `r` (values to be loaded): how a pruned checkpoint is loaded."""
        w = self.weight
        self._set(torch.zeros(r, self.in_features, device=w.device, dtype=w.dtype),
                  torch.zeros(self.out_features, r, device=w.device, dtype=w.dtype),
                  torch.zeros(r, device=w.device, dtype=w.dtype))

    def _set(self, a: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> None:
        grad = self.sora_gate.requires_grad
        self.sora_A = nn.Parameter(a, requires_grad=grad)
        self.sora_B = nn.Parameter(b, requires_grad=grad)
        self.sora_gate = nn.Parameter(g, requires_grad=grad)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sora_rank={self.rank}, scaling={self.scaling:g}"


# --- the optimizer ------------------------------------------------------------------------------------------
class ProximalAdamW(torch.optim.AdamW):
    """AdamW; after each step, every parameter of a group with `prox_threshold` ξ > 0 that received a
    gradient is soft-thresholded: `p ← sign(p) · max(|p| − ξ, 0)` (the proximal map of ξ‖p‖₁).
    One object: steps, zero_grad, state_dict and LR schedulers work as for AdamW."""

    def step(self, closure=None):
        loss = super().step(closure)
        with torch.no_grad():
            for group in self.param_groups:
                xi = float(group.get("prox_threshold", 0.0))
                if xi <= 0:
                    continue
                for p in group["params"]:
                    if p.grad is not None:
                        p.copy_(p.sign() * (p.abs() - xi).clamp_min(0.0))
        return loss


# --- the method --------------------------------------------------------------------------------------------
class SoRA(Method):
    """Sparse low-rank adaptation: gated LoRA with a proximal gate step; prunable and mergeable."""

    name = "sora"
    can_merge = True

    def validate(self, model: nn.Module, targets: str) -> None:
        c = self.cfg
        if not isinstance(c.r, int) or c.r < 1:
            raise ValueError(f"r={c.r!r}: must be a positive integer")
        if not 0.0 <= c.dropout < 1.0:
            raise ValueError(f"dropout={c.dropout!r}: must be in [0, 1)")
        if c.sparse_lambda < 0 or c.sparse_lambda_2 < 0:
            raise ValueError(f"sparse_lambda={c.sparse_lambda}, sparse_lambda_2={c.sparse_lambda_2}: must be >= 0")
        if c.sparse_lr is not None and c.sparse_lr <= 0:
            raise ValueError(f"sparse_lr={c.sparse_lr}: must be > 0 or null")
        for n, m in iter_linear(model, resolve_targets(model, targets)):
            if isinstance(m, SoRALinear):
                raise ValueError(f"sora: module {n!r} is already adapted; build a fresh model")

    def inject(self, model: nn.Module, targets: str) -> None:
        c = self.cfg
        for n, base in list(iter_linear(model, resolve_targets(model, targets))):
            parent, child = get_submodule_parent(model, n)
            setattr(parent, child, SoRALinear(base, c.r, c.alpha, c.dropout))

    @staticmethod
    def layers(model: nn.Module) -> Iterator[tuple[str, SoRALinear]]:
        return ((n, m) for n, m in model.named_modules() if isinstance(m, SoRALinear))

    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        for n, m in self.layers(model):
            yield f"{n}.sora_A", m.sora_A
            yield f"{n}.sora_B", m.sora_B
            yield f"{n}.sora_gate", m.sora_gate

    def gates(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [(f"{n}.sora_gate", m.sora_gate) for n, m in self.layers(model)]

    # --- counting ------------------------------------------------------------------------------------------
    def live_ranks(self, model: nn.Module) -> dict[str, int]:
        """Live (non-zero gate) ranks per adapted module; on the meta device, all ranks."""
        return {n: (m.rank if m.sora_gate.is_meta else int(m.live_mask().sum())) for n, m in self.layers(model)}

    def count(self, model: nn.Module) -> ParamCount:
        """The paper's count: only live ranks, `live · (din + dout) + live` per matrix."""
        base = super().count(model)
        live = self.live_ranks(model)
        method = sum(live[n] * (m.in_features + m.out_features + 1) for n, m in self.layers(model))
        return ParamCount(method=method, head=base.head, total=base.total)

    def rank_report(self, model: nn.Module) -> dict[str, Any]:
        """Nominal (`r` per matrix, as configured) and live (non-zero gate) ranks and parameters; the
        paper's SoRA cell (0.12M) is the live count after training."""
        layers = dict(self.layers(model))
        live = self.live_ranks(model)
        r = self.cfg.r
        return {"nominal_ranks": r * len(layers), "live_ranks": sum(live.values()),
                "nominal_params": sum(r * (m.in_features + m.out_features + 1) for m in layers.values()),
                "live_params": self.count(model).method}

    def count_nominal(self, model: nn.Module) -> ParamCount:
        """Every allocated rank, dead or alive: `r · (din + dout) + r` per matrix."""
        return super().count(model)

    # --- training ------------------------------------------------------------------------------------------
    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        gate_ids = {id(p) for _, p in self.gates(model)}
        decay, no_decay = [], []
        for n, p in self.trainable_parameters(model):
            if id(p) not in gate_ids:
                (no_decay if any(k in n for k in NO_DECAY_KEYS) else decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr},
                  {"params": no_decay, "weight_decay": 0.0, "lr": lr},
                  {"params": [p for _, p in self.gates(model)], "weight_decay": 0.0,
                   "lr": self.cfg.sparse_lr or lr, "prox_threshold": self.cfg.sparse_lambda_2}]
        return [g for g in groups if g["params"]]

    def optimizer(self, model: nn.Module, lr: float, weight_decay: float,
                  betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
        return ProximalAdamW(self.param_groups(model, lr, weight_decay), lr=lr, betas=betas, eps=eps)

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """`sparse_lambda · Σ|g| / (number of gate entries)`."""
        gates = [p for _, p in self.gates(model)]
        if self.cfg.sparse_lambda == 0 or not gates:
            return None
        total = sum(p.numel() for p in gates)
        if total == 0:
            return None
        return self.cfg.sparse_lambda * torch.stack([p.abs().sum() for p in gates]).sum() / total

    # --- inference -----------------------------------------------------------------------------------------
    def prune(self, model: nn.Module) -> dict[str, int]:
        """Remove dead ranks (gate exactly 0) in place; returns the ranks dropped per module. The
        parameters are replaced: build a new optimizer if training continues."""
        return {n: m.prune() for n, m in self.layers(model)}

    def merge(self, model: nn.Module) -> nn.Module:
        for _, m in self.layers(model):
            m.merge()
        return model

    def unmerge(self, model: nn.Module) -> nn.Module:
        for _, m in self.layers(model):
            m.unmerge()
        return model

    def load_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """As the base method; a checkpoint of a pruned model first resizes the matching layers."""
        for n, m in self.layers(model):
            g = state.get(f"{n}.sora_gate")
            if g is not None and g.ndim == 1 and g.shape[0] != m.rank:
                m.resize(g.shape[0])
        super().load_state_dict(model, state)
