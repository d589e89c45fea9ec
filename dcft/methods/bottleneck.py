"""Bottleneck adapters: the Houlsby adapter "HAdapter" (Houlsby et al., ICML 2019, "Parameter-Efficient
Transfer Learning for NLP") and the Pfeiffer adapter "PAdapter" (Pfeiffer et al., EACL 2021,
"AdapterFusion: Non-Destructive Task Composition for Transfer Learning"), as baselines of the AdaLoRA
and DCFT papers.

Each adapter is `h ↦ h + up(act(down(h)))` with `down = Linear(hidden, m)`, `up = Linear(m, hidden)`:
`2·hidden·m + m + hidden` parameters. It acts on a sub-layer's output before that sub-layer's
residual LayerNorm: the sub-layer's output projection (`attention.output.dense`, the layer's
`output.dense`) is replaced by an `nn.Linear` subclass that keeps the same `weight` / `bias`
Parameters (backbone names unchanged) and applies the adapter to its result, so the model computes
`LayerNorm(dropout(adapter(dense(x))) + residual)`.

* HAdapter: after the attention output and after the FFN output (two per layer), swish (SiLU), m = 8.
  SiLU is the Houlsby adapter of the AdaLoRA reference (adapter_type 'houlsby') and of the LoRA
  repository's RoBERTa code; OpenDelta's adapter (SoRA's adapter script) uses `activation=gelu_new`
  (tanh-approximated GELU, transformers' `gelu_new`), offered by name.
  DeBERTaV3-base: 24 × 13,064 = 313,536 parameters (paper 0.31M); RoBERTa-large 835,968 (0.8M).
* PAdapter: after the FFN output only (one per layer), ReLU, m = 16.
  DeBERTaV3-base: 12 × 25,360 = 304,320 parameters (paper 0.3M); RoBERTa-large 811,392 (0.8M).
  Its input is the block's LayerNorm of (h + input), as in the AdaLoRA reference the DCFT authors forked
  (QingruZhang/AdaLoRA@d10f5eb, NLU/src/transformers/models/deberta_v2/modeling_deberta_v2.py,
  `DebertaV2Output.forward` with adapter_type 'pfeiffer') and AdapterHub's Pfeiffer configuration:
  with h = dropout(dense(x)) and z = h + input, the block computes
  `LayerNorm(h + up(act(down(LayerNorm(z)))) + input) = LayerNorm(z + adapter_delta(LayerNorm(z)))`,
  one LayerNorm module (the block's own, same weights) applied twice. It is realised by replacing the
  block's LayerNorm with an `nn.LayerNorm` subclass that keeps its Parameters. `input=dense` is the
  other choice: the adapter on the raw dense output, as the Houlsby adapter (this harness's first version).

Initialisation is the identity: `up` is zero (weight and bias), `down` is N(0, init_std) with zero
bias. Not mergeable (the adapter is non-linear).

Decision: written in-house rather than with the `adapters` library (AdapterHub 1.3.0 has both as
"double_seq_bn" / "seq_bn"), because that library pins transformers ~=4.57.6 and this project runs
transformers 5. The in-house version is a few dozen lines and keeps the model a plain transformers model.
Where the adapter reads (`input`): HAdapter `dropout` (default) applies it to dropout(dense(x)), as the
AdaLoRA reference (`DebertaV2SelfOutput` / `DebertaV2Output`, adapter_type 'houlsby') and AdapterHub, by
wrapping the block's `dropout` module; PAdapter `layernorm` (default, above). `input=dense` puts either
inside the dense projection, before the dropout (this harness's first version; the same function in
evaluation, where dropout is off).

The two methods share one module; the registry finds each one's schema through the class attribute
`config_class` (`HAdapter.config_class = HAdapterConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from dcft.methods.base import Method
from dcft.harness.models import get_submodule_parent, iter_linear, role_modules

ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh,
               "gelu_new": partial(nn.GELU, approximate="tanh")}  # gelu_new: transformers' / OpenDelta's tanh GELU
# Where adapters go, as roles of dcft.harness.models.ROLE_PATTERNS: o = attention output, f = FFN output.
PLACEMENTS = {"attn_ffn": ("o", "f"), "ffn": ("f",)}


@dataclass
class HAdapterConfig:
    """Houlsby adapter (Houlsby et al. 2019): bottlenecks after the attention and the FFN outputs."""

    name: str = "hadapter"  # registry key
    bottleneck: int = 8  # bottleneck width m, features (2·h·m + m + h parameters per adapter)
    activation: str = "silu"  # non-linearity between down and up projection: silu (= swish), gelu_new (tanh GELU, OpenDelta), relu, gelu, tanh
    placement: str = "attn_ffn"  # attn_ffn = after attention output and FFN output (Houlsby); ffn = after FFN output only (Pfeiffer)
    init_std: float = 0.02  # standard deviation of the down-projection's normal init (up-projection starts at zero)
    input: str = "dropout"  # dropout = adapter on dropout(dense(x)) (AdaLoRA/DCFT code, AdapterHub); dense = inside the projection, before dropout


@dataclass
class PAdapterConfig:
    """Pfeiffer adapter (Pfeiffer et al. 2021): one bottleneck after the FFN output."""

    name: str = "padapter"  # registry key
    bottleneck: int = 16  # bottleneck width m, features (2·h·m + m + h parameters per adapter)
    activation: str = "relu"  # non-linearity between down and up projection: relu, silu (= swish), gelu_new (tanh GELU), gelu, tanh
    placement: str = "ffn"  # ffn = after FFN output only (Pfeiffer); attn_ffn = after attention output and FFN output (Houlsby)
    init_std: float = 0.02  # standard deviation of the down-projection's normal init (up-projection starts at zero)
    input: str = "layernorm"  # layernorm = adapter reads LayerNorm(h + input) (AdaLoRA/DCFT code, AdapterHub); dense = the raw dense output


Config = HAdapterConfig  # the module-level schema the registry falls back to


class Bottleneck(nn.Module):
    """`h ↦ h + up(act(down(h)))`, identity at initialisation."""

    def __init__(self, hidden: int, m: int, activation: str, init_std: float,
                 device=None, dtype=None):
        super().__init__()
        self.down = nn.Linear(hidden, m, device=device, dtype=dtype)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(m, hidden, device=device, dtype=dtype)
        nn.init.normal_(self.down.weight, mean=0.0, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def delta(self, h: torch.Tensor) -> torch.Tensor:
        """`up(act(down(h)))`: what the adapter adds."""
        return self.up(self.act(self.down(h)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.delta(h)


class AdaptedLinear(nn.Linear):
    """An `nn.Linear` (same `weight` / `bias` Parameters as the one it replaces) followed by an adapter."""

    def __init__(self, base: nn.Linear, adapter: Bottleneck):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(F.linear(x, self.weight, self.bias))


class AdaptedLayerNorm(nn.LayerNorm):
    """A block's residual `nn.LayerNorm` (same `weight` / `bias` Parameters) with a Pfeiffer adapter:
    `LN(z + up(act(down(LN(z)))))` for the sum `z = h + input` it receives."""

    def __init__(self, base: nn.LayerNorm, adapter: Bottleneck):
        nn.Module.__init__(self)
        self.normalized_shape, self.eps = base.normalized_shape, base.eps
        self.elementwise_affine = base.elementwise_affine
        self.weight, self.bias = base.weight, base.bias
        self.adapter = adapter

    def _norm(self, z: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(z, self.normalized_shape, self.weight, self.bias, self.eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._norm(z + self.adapter.delta(self._norm(z)))


class AdaptedDropout(nn.Module):
    """A block's dropout module followed by an adapter: `adapter(dropout(h))` (no Parameters of its own)."""

    def __init__(self, base: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base(h))


ADAPTED = (AdaptedLinear, AdaptedLayerNorm, AdaptedDropout)
INPUTS = {"dense": "the raw dense output", "dropout": "dropout(dense(x))", "layernorm": "LayerNorm(h + input)"}


class _BottleneckAdapter(Method):
    """Bottleneck adapters on the sub-layer output projections named by `cfg.placement`."""

    can_merge = False  # the adapter is non-linear

    def sites(self, model: nn.Module) -> list[str]:
        """Names of the output projections that receive an adapter."""
        return role_modules(model, PLACEMENTS[self.cfg.placement])

    def validate(self, model: nn.Module, targets: str) -> None:
        c = self.cfg
        if not isinstance(c.bottleneck, int) or c.bottleneck < 1:
            raise ValueError(f"bottleneck={c.bottleneck!r}: must be a positive integer")
        if c.activation not in ACTIVATIONS:
            raise ValueError(f"activation={c.activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if c.placement not in PLACEMENTS:
            raise ValueError(f"placement={c.placement!r}; valid: {', '.join(PLACEMENTS)}")
        if c.init_std < 0:
            raise ValueError(f"init_std={c.init_std!r}: must be >= 0")
        sites = self.sites(model)
        if not sites:
            raise ValueError(f"{self.name}: no {c.placement} output projection found in this model")
        for n, m in iter_linear(model, sites):  # a Conv1D site (GPT-2) is refused here, by name
            if isinstance(m, AdaptedLinear):
                raise ValueError(f"{self.name}: module {n!r} already carries an adapter; build a fresh model")
            where = self._input()
            if where == "dense":
                continue
            parent, _ = get_submodule_parent(model, n)
            attr, kind = ("LayerNorm", nn.LayerNorm) if where == "layernorm" else ("dropout", nn.Module)
            mod = getattr(parent, attr, None)
            if isinstance(mod, ADAPTED):
                raise ValueError(f"{self.name}: the {attr} after {n!r} already carries an adapter; build a fresh model")
            if not isinstance(mod, kind):
                raise ValueError(f"{self.name}: input={where} needs a module named {attr!r} beside {n!r} (the block's "
                                 f"{attr}); found {type(mod).__name__}. Use method.input=dense for this model")

    def _input(self) -> str:
        value = getattr(self.cfg, "input", "dense")
        if value not in INPUTS:
            raise ValueError(f"input={value!r}; valid: " + ", ".join(f"{k} (adapter reads {v})" for k, v in INPUTS.items()))
        return value

    def inject(self, model: nn.Module, targets: str) -> None:
        c = self.cfg
        for n, base in list(iter_linear(model, self.sites(model))):
            w = base.weight
            adapter = Bottleneck(base.out_features, c.bottleneck, c.activation, c.init_std,
                                 device=w.device, dtype=w.dtype)
            parent, child = get_submodule_parent(model, n)
            if self._input() == "layernorm":
                parent.LayerNorm = AdaptedLayerNorm(parent.LayerNorm, adapter)
            elif self._input() == "dropout":
                parent.dropout = AdaptedDropout(parent.dropout, adapter)
            else:
                setattr(parent, child, AdaptedLinear(base, adapter))

    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        for n, m in model.named_modules():
            if isinstance(m, ADAPTED):
                for pn, p in m.adapter.named_parameters():
                    yield f"{n}.adapter.{pn}", p


class HAdapter(_BottleneckAdapter):
    """Houlsby adapter: after attention output and FFN output, SiLU, m = 8."""

    name = "hadapter"
    config_class = HAdapterConfig
    revision = 2  # the adapter reads dropout(dense(x)) (method.input=dropout)


class PAdapter(_BottleneckAdapter):
    """Pfeiffer adapter: after the FFN output only, ReLU, m = 16, reading the block's LayerNorm(h + input)."""

    name = "padapter"
    config_class = PAdapterConfig
    revision = 2  # the adapter reads the block's LayerNorm(h + input) (method.input=layernorm)
