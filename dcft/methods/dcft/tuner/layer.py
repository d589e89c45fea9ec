"""`DcftLayer` / `DcftLinear`: DCFT as a peft `BaseTunerLayer` (paper Sec. 3), several named
adapters per layer, over an `nn.Linear` or a GPT-2 `Conv1D` (decided per layer from the base
module, never by changing the shared config).

The arithmetic is `dcft.methods.dcft.ops`, the same functions the harness's `DCFTLinear` calls.
Per adapter: `dcft_A[name]` (k x din'), `dcft_B[name]` (dout' x k), `dcft_C[name]` (d x d), and
the plain values stride, scaling, impl and a dropout module. Active adapters add their updates;
merged ones live in the base weight (Delta^T for nn.Linear, Delta for Conv1D). With peft's
`adapter_names` (one name per row of the batch, "__base__" for none; injected into each layer's
forward by `DcftModel._enable_peft_forward_hooks`) each row gets its own adapter's update.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn

from dcft.methods.dcft import ops
from dcft.methods.dcft.layer import base_sizes, oriented, shape_error, subspace_size

BASE_ADAPTER = "__base__"  # peft's name, in `adapter_names`, for "this row goes through no adapter"


def lora_factors(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, stride: int,
                 scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(lora_A, lora_B) of the LoRA of rank k*d (alpha = rank, scaling 1) equal to a DCFT adapter,
    in peft's nn.Linear layout: lora_A = M^T (k*d x din), lora_B = scaling * G^T (dout x k*d), so
    lora_B @ lora_A = scaling * Delta^T (DCFT's Delta = M G, `ops.factors`). peft's LoRA on a
    Conv1D (fan_in_fan_out) takes the same two matrices."""
    m, g = ops.factors(A, B, C, stride)
    return m.t().contiguous(), (scaling * g.t()).contiguous()


class DcftLayer(BaseTunerLayer):
    """What every DCFT tuner layer holds: the adapters' tensors and settings, keyed by adapter name."""

    adapter_layer_names = ("dcft_A", "dcft_B", "dcft_C")  # trainable, saved in adapter_model.safetensors
    other_param_names = ("dcft_kernel", "dcft_stride", "dcft_scaling", "dcft_impl", "dcft_dropout")

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.dcft_A = nn.ParameterDict({})
        self.dcft_B = nn.ParameterDict({})
        self.dcft_C = nn.ParameterDict({})
        self.dcft_kernel: dict[str, int] = {}
        self.dcft_stride: dict[str, int] = {}
        self.dcft_scaling: dict[str, float] = {}
        self.dcft_impl: dict[str, str] = {}
        self.dcft_dropout = nn.ModuleDict({})
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self.kwargs = kwargs
        self.in_features, self.out_features, self.transposed = base_sizes(self.get_base_layer())

    def update_layer(self, adapter_name: str, cfg, inference_mode: bool = False, name: str = "<module>") -> None:
        """Add adapter `adapter_name` with the hyperparameters of `cfg` (a validated harness
        `dcft.methods.dcft.Config`, this module's kernel / stride already resolved)."""
        error = shape_error(name, self.in_features, self.out_features, cfg.kernel, cfg.stride)
        if error:
            raise ValueError(error)
        d, s, k = cfg.kernel, cfg.step, cfg.rank
        weight = self.get_base_layer().weight
        kw = {"device": weight.device,
              "dtype": weight.dtype if weight.is_floating_point() else torch.get_default_dtype()}
        self.dcft_A[adapter_name] = nn.Parameter(torch.empty(k, subspace_size(self.in_features, d, s), **kw))
        self.dcft_B[adapter_name] = nn.Parameter(torch.empty(subspace_size(self.out_features, d, s), k, **kw))
        self.dcft_C[adapter_name] = nn.Parameter(torch.empty(d, d, **kw))
        self.dcft_kernel[adapter_name], self.dcft_stride[adapter_name] = d, s
        self.dcft_scaling[adapter_name] = cfg.scaling
        self.dcft_impl[adapter_name] = cfg.impl
        self.dcft_dropout[adapter_name] = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        ops.initialise(self.dcft_A[adapter_name], self.dcft_B[adapter_name], self.dcft_C[adapter_name],
                       cfg.init, cfg.init_std)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=inference_mode)

    def _tensors(self, adapter: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.dcft_A[adapter], self.dcft_B[adapter], self.dcft_C[adapter]

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        """scaling * Delta in the base weight's layout (dout x din for nn.Linear, din x dout for
        Conv1D), in the base weight's dtype: what `merge` adds."""
        if adapter not in self.dcft_A:
            raise ValueError(f"adapter {adapter!r} is not in this layer; it has {sorted(self.dcft_A)}")
        weight = self.get_base_layer().weight
        A, B, C = self._tensors(adapter)
        delta = ops.delta(A, B, C, self.dcft_stride[adapter]) * self.dcft_scaling[adapter]
        return oriented(delta, self.transposed).to(weight.dtype)

    def lora_factors(self, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(lora_A, lora_B) of the exactly equal LoRA of rank k*d (`lora_factors`)."""
        return lora_factors(*self._tensors(adapter), self.dcft_stride[adapter], self.dcft_scaling[adapter])

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        return True  # additive: W' = W0 + scaling * Delta (peft's convert_to_lora; dcft.to_lora is exact)


class DcftLinear(nn.Module, DcftLayer):
    """DCFT on an `nn.Linear` or a `Conv1D`: `base(x) + sum over active adapters of scaling * x Delta`."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, cfg, name: str = "<module>", **kwargs: Any):
        super().__init__()
        DcftLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, cfg, inference_mode=kwargs.get("inference_mode", False), name=name)

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        """Add scaling * Delta of the given (default: active) adapters to the base weight."""
        adapter_names = check_adapters_to_merge(self, adapter_names)
        base = self.get_base_layer()
        for name in adapter_names:
            if name not in self.dcft_A:
                continue
            merged = base.weight.data + self.get_delta_weight(name)
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"NaNs detected in the merged weights; the adapter {name!r} seems to be broken")
            base.weight.data = merged
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Subtract every merged adapter's update again (exact up to floating-point rounding)."""
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.")
            return
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name in self.dcft_A:
                self.get_base_layer().weight.data -= self.get_delta_weight(name)

    def _add_update(self, result: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
        """`result + scaling * dropout(x) Delta` of adapter `name` (`ops.add_update`)."""
        A, B, C = self._tensors(name)
        return ops.add_update(result, self.dcft_dropout[name](x), A, B, C, self.dcft_stride[name],
                              self.dcft_scaling[name], self.dcft_impl[name])

    def _check_forward_args(self, x: torch.Tensor, adapter_names: Optional[list[str]]) -> None:
        """peft's rules for `adapter_names`: one name per row of `x`, and no merged adapter (its
        update is in the base weight for every row)."""
        if adapter_names is None:
            return
        if len(x) != len(adapter_names):
            raise ValueError("Length of `adapter_names` should be the same as the number of inputs, but got "
                             f"{len(adapter_names)} and {len(x)} respectively.")
        if self.merged:
            raise ValueError("Cannot pass `adapter_names` when there are merged adapters, please call "
                             "`unmerge_adapter` first.")

    def _mixed_batch_forward(self, x: torch.Tensor, *args: Any, adapter_names: list[str], **kwargs: Any):
        """The base output, plus on each row the update of the adapter `adapter_names` gives that row
        (none for "__base__", or for an adapter this layer does not have)."""
        result = self.base_layer(x, *args, **kwargs)
        for name in dict.fromkeys(adapter_names):  # first-seen order: deterministic
            if name == BASE_ADAPTER or name not in self.dcft_A:
                continue
            rows = [i for i, n in enumerate(adapter_names) if n == name]
            result[rows] = self._add_update(result[rows], x[rows], name)
        return result

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter_names = kwargs.pop("adapter_names", None)
        self._check_forward_args(x, adapter_names)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if adapter_names is not None:
            return self._mixed_batch_forward(x, *args, adapter_names=adapter_names, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        for name in self.active_adapters:
            if name in self.dcft_A:
                result = self._add_update(result, x, name)
        return result

    def __repr__(self) -> str:
        return "dcft." + super().__repr__()
