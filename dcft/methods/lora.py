"""LoRA (Hu et al., ICLR 2022, "LoRA: Low-Rank Adaptation of Large Language Models").

`y = W x + (alpha / r) · B A x`, with A (r × din) kaiming-uniform(a=√5), B (dout × r) zero, optional
dropout on the adapter's input. The layers are `peft`'s (`peft.LoraConfig`), injected in place into the
transformers model with `peft.inject_adapter_in_model`: no `PeftModel` wrapper, so the object the loop
trains is the transformers model itself and parameter names stay
`<module>.lora_A.default.weight` / `<module>.base_layer.weight` (no `base_model.model.` prefix).

Targets are the exact module names of `dcft.harness.models.resolve_targets`, so a suffix such as
`output.dense` never catches `attention.output.dense` nor `pooler.dense`. The DCFT paper compares
with LoRA at rank 1 on ALL targets (DeBERTaV3-base: 165,888 parameters).

The helpers here (`inject_peft`, `peft_lora_layers`, ...) are shared with LoRA-FA and AdaLoRA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from dcft.methods.base import Method
from dcft.harness.models import is_conv1d, resolve_targets

ADAPTER = "default"  # the peft adapter name every peft-based method here uses


@dataclass
class Config:
    """LoRA (Hu et al. 2022): `y += (alpha / r) · B A x` on the target linear layers."""

    name: str = "lora"  # registry key
    targets: Any = "all"  # target set (all, qk, qv, qkv, qkvo), list of module-name suffixes, or regex (dcft.harness.models.resolve_targets)
    r: int = 1  # rank of B A (the DCFT paper compares at rank 1)
    alpha: float = 2.0  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.0  # dropout probability on the adapter's input x


# --- helpers shared by the peft-based methods ---------------------------------------------------------
def check_targets_free(model: nn.Module, names: list[str], method: str) -> None:
    """Refuse to inject into a model whose target layers already carry an adapter."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for n in names:
        if isinstance(model.get_submodule(n), BaseTunerLayer):
            raise ValueError(f"{method}: module {n!r} already carries a peft adapter; build a fresh model")


def peft_target_check(model: nn.Module, names: list[str], method: str) -> None:
    """After injection: peft wrapped exactly the requested modules, nothing else."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = {n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}
    if wrapped != set(names):
        extra, missing = sorted(wrapped - set(names)), sorted(set(names) - wrapped)
        raise RuntimeError(f"{method}: peft wrapped unexpected modules {extra[:3]} / missed {missing[:3]}")


def inject_peft(model: nn.Module, peft_config, names: list[str], method: str) -> None:
    """`peft.inject_adapter_in_model` in place, checked to have wrapped exactly `names`."""
    import peft

    check_targets_free(model, names, method)
    out = peft.inject_adapter_in_model(peft_config, model, adapter_name=ADAPTER)
    if out is not model:  # peft mutates in place and returns the same object
        raise RuntimeError(f"{method}: peft returned a new model object")
    peft_target_check(model, names, method)
    # peft marks every adapter parameter trainable; `Method.apply` unfreezes exactly the method's own
    # parameters (and the head) next, so LoRA-FA's A, for one, stays frozen.
    for p in model.parameters():
        p.requires_grad_(False)


def peft_lora_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The peft LoRA-family layers (LoRA, AdaLoRA) of a model, in model order."""
    from peft.tuners.lora import LoraLayer

    return ((n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer))


def params_with(model: nn.Module, *keys: str) -> Iterator[tuple[str, nn.Parameter]]:
    """Parameters whose dotted name contains one of the `.key.` components."""
    return ((n, p) for n, p in model.named_parameters() if any(f".{k}." in f".{n}." for k in keys))


def merge_peft(model: nn.Module) -> None:
    """Fold every peft adapter into its base weight (`W += ΔW`)."""
    for _, layer in peft_lora_layers(model):
        if not layer.merged:
            layer.merge()


def unmerge_peft(model: nn.Module) -> None:
    """Undo `merge_peft` (`W -= ΔW`)."""
    for _, layer in peft_lora_layers(model):
        if layer.merged:
            layer.unmerge()


class PeftMerge:
    """`merge` / `unmerge` for methods whose layers are peft LoRA layers (LoRA, LoRA-FA, AdaLoRA)."""

    can_merge = True

    def merge(self, model: nn.Module) -> nn.Module:
        with torch.no_grad():
            merge_peft(model)
        return model

    def unmerge(self, model: nn.Module) -> nn.Module:
        with torch.no_grad():
            unmerge_peft(model)
        return model


def fan_in_fan_out(model: nn.Module, names: list[str], method: str) -> bool:
    """peft's `fan_in_fan_out` for these targets: True for transformers `Conv1D` (GPT-2, weight stored
    (in, out)), False for `nn.Linear`. One peft config holds one value, so a mix is refused (peft would
    otherwise flip the shared config's value itself, with a warning)."""
    kinds = {is_conv1d(model.get_submodule(n)) for n in names}
    if len(kinds) > 1:
        conv = [n for n in names if is_conv1d(model.get_submodule(n))]
        raise ValueError(f"{method}: the targets mix nn.Linear and Conv1D modules (e.g. {conv[0]!r}); one peft "
                         f"config takes one kind: choose targets of one kind")
    return kinds == {True}


def check_rank(r: int, what: str = "r") -> None:
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"{what}={r!r}: must be a positive integer")


def check_dropout(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout={p!r}: must be in [0, 1)")


# --- the method ------------------------------------------------------------------------------------------
class LoRA(PeftMerge, Method):
    """LoRA through peft layers injected in place; mergeable."""

    name = "lora"

    def validate(self, model: nn.Module, targets: str) -> None:
        check_rank(self.cfg.r)
        check_dropout(self.cfg.dropout)
        fan_in_fan_out(model, resolve_targets(model, targets), self.name)  # raises on bad targets

    def lora_config(self, names: list[str], conv1d: bool = False):
        from peft import LoraConfig

        return LoraConfig(r=self.cfg.r, lora_alpha=self.cfg.alpha, lora_dropout=self.cfg.dropout,
                          target_modules=list(names), bias="none", init_lora_weights=True,
                          fan_in_fan_out=conv1d)

    def inject(self, model: nn.Module, targets: str) -> None:
        names = resolve_targets(model, targets)
        inject_peft(model, self.lora_config(names, fan_in_fan_out(model, names, self.name)), names, self.name)

    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        return params_with(model, "lora_A", "lora_B")

