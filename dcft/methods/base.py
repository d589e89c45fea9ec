"""The small interface every fine-tuning method implements.

The training loop (`dcft.harness.train`) talks to a method only through this class: it never
branches on a method's name. A method

* injects its modules into a backbone and freezes what it does not train (`apply`),
* names its own trainable parameters (`own_parameters`); the task head (classifier,
  QA outputs, pooler) is trained for every method and is handled here, apart,
* may build its own optimizer (`optimizer`, default AdamW with the usual weight-decay
  exemptions), add a loss term (`extra_loss`), act after each optimizer step
  (`after_step`) and checkpoint what that step keeps (`training_state`), fold itself into the backbone for inference (`merge`), and save / load
  only its own state (`state_dict` / `load_state_dict`).

Parameter counts follow the paper's "#Params" convention: the method's own trainable
parameters, with the classifier head and pooler counted apart (paper Sec. 4.1, Table 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from dcft.harness.models import head_parameter_names

# Parameters never decayed by AdamW: biases and normalisation weights (BERT/HF convention).
NO_DECAY_KEYS = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight")


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one adapted model, in the paper's sense."""

    method: int  # the method's own trainable parameters: the paper's "#Params"
    head: int  # classifier / QA head and pooler: trained for every method, counted apart
    total: int  # every parameter of the model (backbone, method, head)

    @property
    def trainable(self) -> int:
        return self.method + self.head


class Method:
    """Base class: a method that trains only the head. Subclasses override what they need."""

    name: str = "base"
    can_merge: bool = False  # whether `merge` folds the method into the backbone weights
    # Bumped by hand when a change alters what this method computes: part of a run's identity
    # (`dcft.harness.identity`), so results of an older revision are not reused as current.
    revision: int = 1

    def __init__(self, cfg: Any):
        self.cfg = cfg

    # --- building -------------------------------------------------------------------------
    @property
    def targets(self) -> str:
        """The target set (`dcft.harness.models.TARGET_SETS`) from the method's config, default `all`."""
        return getattr(self.cfg, "targets", None) or "all"

    def validate(self, model: nn.Module, targets: str) -> None:
        """Raise a clear `ValueError` if this method cannot be applied (before any work)."""

    def inject(self, model: nn.Module, targets: str) -> None:
        """Add the method's modules/parameters to `model` in place. Default: nothing."""

    def apply(self, model: nn.Module, targets: str | None = None) -> nn.Module:
        """Validate, freeze the backbone, inject, and unfreeze own parameters and the head."""
        targets = targets or self.targets
        self.validate(model, targets)
        for p in model.parameters():
            p.requires_grad_(False)
        self.inject(model, targets)
        for _, p in self.own_parameters(model):
            p.requires_grad_(True)
        for _, p in self.head_parameters(model):
            p.requires_grad_(True)
        return model

    # --- what trains ----------------------------------------------------------------------
    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        """The method's own trainable parameters (the paper's "#Params"). Default: none."""
        return iter(())

    def head_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        """Classifier / QA head and pooler: trained for every method, counted apart."""
        heads = set(head_parameter_names(model))
        own = {n for n, _ in self.own_parameters(model)}
        return ((n, p) for n, p in model.named_parameters() if n in heads and n not in own)

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """Everything the optimizer updates: own parameters, then the head."""
        return list(self.own_parameters(model)) + list(self.head_parameters(model))

    def count(self, model: nn.Module) -> ParamCount:
        """Count parameters without touching data (works on the meta device)."""
        own = sum(p.numel() for _, p in self.own_parameters(model))
        head = sum(p.numel() for _, p in self.head_parameters(model))
        total = sum(p.numel() for p in model.parameters())
        return ParamCount(method=own, head=head, total=total)

    # --- training hooks ---------------------------------------------------------------------
    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: weight decay on everything but biases and LayerNorm weights."""
        decay, no_decay = [], []
        for n, p in self.trainable_parameters(model):
            (no_decay if any(k in n for k in NO_DECAY_KEYS) else decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr},
                  {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
        return [g for g in groups if g["params"]]

    def optimizer(self, model: nn.Module, lr: float, weight_decay: float,
                  betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
        """The optimizer the loop steps. Default: AdamW over `param_groups`."""
        return torch.optim.AdamW(self.param_groups(model, lr, weight_decay), lr=lr, betas=betas, eps=eps)

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the task loss (e.g. DCFT's orthogonal regulariser). Default: none."""
        return None

    def after_step(self, model: nn.Module, step: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Called after each optimizer step, before gradients are zeroed. Default: nothing."""

    def prepare_training(self, model: nn.Module, total_steps: int) -> None:
        """Told the run's total number of optimizer steps before training. Default: nothing."""

    def rank_report(self, model: nn.Module) -> dict[str, Any] | None:
        """For methods whose rank changes while training (SoRA's gates, AdaLoRA's allocator): the
        nominal (allocated) and live rank and parameter counts of the model as it is now, for the
        result record after training. Default: None (the count does not change)."""
        return None

    def training_state(self) -> dict[str, Any]:
        """State the method keeps outside the parameters and the optimizer (e.g. AdaLoRA's
        importance scores), saved with every checkpoint so a resumed run continues it. Default: none."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what `training_state` returned (called after `prepare_training`). Default: nothing."""

    # --- inference and persistence ----------------------------------------------------------------
    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the method into the backbone for inference, where possible."""
        if not self.can_merge:
            raise NotImplementedError(f"method {self.name!r} cannot be merged into the base weights")
        return model

    def unmerge(self, model: nn.Module) -> nn.Module:
        """Undo `merge`."""
        if not self.can_merge:
            raise NotImplementedError(f"method {self.name!r} cannot be merged into the base weights")
        return model

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The method's trainable state plus the head: what a checkpoint must keep."""
        return {n: p.detach().clone() for n, p in self.trainable_parameters(model)}

    def load_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load what `state_dict` returned into an adapted model of the same configuration."""
        params = dict(model.named_parameters())
        missing = [n for n, _ in self.trainable_parameters(model) if n not in state]
        unexpected = [n for n in state if n not in params]
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not fit this {self.name!r} model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]} (was it saved with another method, targets or kernel?)"
            )
        with torch.no_grad():
            for n, t in state.items():
                if params[n].shape != t.shape:
                    raise ValueError(
                        f"checkpoint tensor {n!r} has shape {tuple(t.shape)}, model expects "
                        f"{tuple(params[n].shape)} (was it saved with another kernel, stride or model?)"
                    )
                params[n].copy_(t)


def named_params(model: nn.Module, names: Iterable[str]) -> Iterator[tuple[str, nn.Parameter]]:
    """The parameters of `model` with these names, in model order."""
    wanted = set(names)
    return ((n, p) for n, p in model.named_parameters() if n in wanted)
