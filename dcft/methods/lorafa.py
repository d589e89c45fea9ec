"""LoRA-FA (Zhang et al. 2023, "LoRA-FA: Memory-efficient Low-rank Adaptation for Large Language
Models Fine-tuning", arXiv:2308.03303).

The 2023 method (`variant="frozen_a"`, the default): LoRA whose down-projection A is frozen at its
random initialisation (kaiming-uniform, a=√5); only the up-projection B (zero at start) and the task
head train. The update is `y += (alpha / r) · B A x` as in LoRA, and the paper's "#Params" counts B
only: `r · dout` per adapted matrix.

`variant="peft_optimizer"` is a different, later method offered under its own name: peft's
`LoraFAOptimizer` (what `peft.optimizers.create_lorafa_optimizer` builds), which keeps A frozen too but
also rescales B's gradient by `(1 / scaling²) · (A Aᵀ)⁻¹` before its AdamW step (a projection of the
full-rank gradient). `create_lorafa_optimizer` itself wants a `PeftModel` (it reads
`model.active_adapters` and `model.peft_config`); the adapters here are injected in place into the
transformers model, so the same optimizer class is built directly with the same parameter groups
(names, per-parameter scaling factors), with the run's betas and eps instead of the helper's fixed
(0.9, 0.999).

Because A is frozen but random, `state_dict` saves it with B and the head: a checkpoint does not depend
on the seed of the model that loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from dcft.methods.base import NO_DECAY_KEYS
from dcft.methods.lora import Config as LoRAConfig
from dcft.methods.lora import LoRA, params_with

VARIANTS = ("frozen_a", "peft_optimizer")


@dataclass
class Config(LoRAConfig):
    """LoRA-FA (Zhang et al. 2023): LoRA with A frozen at its random init; only B (and the head) train.
    The fields of LoRA's config, plus `variant`."""

    name: str = "lorafa"  # registry key
    variant: str = "frozen_a"  # frozen_a = the 2023 method (AdamW on B); peft_optimizer = peft's LoraFAOptimizer (B's gradient rescaled by (A Aᵀ)⁻¹)


class LoRAFA(LoRA):
    """LoRA with frozen A; optionally peft's LoRA-FA optimizer (`variant="peft_optimizer"`)."""

    name = "lorafa"

    def validate(self, model: nn.Module, targets: str) -> None:
        if self.cfg.variant not in VARIANTS:
            raise ValueError(f"lorafa variant={self.cfg.variant!r}; valid: {', '.join(VARIANTS)}")
        super().validate(model, targets)

    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        return params_with(model, "lora_B")

    def frozen_a(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        """The frozen random down-projections A."""
        return params_with(model, "lora_A")

    def optimizer(self, model: nn.Module, lr: float, weight_decay: float,
                  betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
        if self.cfg.variant == "frozen_a":
            return super().optimizer(model, lr, weight_decay, betas, eps)
        return self._peft_optimizer(model, lr, weight_decay, betas, eps)

    def _peft_optimizer(self, model, lr, weight_decay, betas, eps) -> torch.optim.Optimizer:
        """peft's `LoraFAOptimizer` with the groups `create_lorafa_optimizer` would build: each
        adapter's A immediately followed by its B (the optimizer pairs them by order), then the head."""
        from peft.optimizers.lorafa import LoraFAOptimizer
        from peft.tuners.lora import LoraLayer

        from dcft.methods.lora import ADAPTER

        lora_names, lora_params, factors = [], [], []
        for mod_name, layer in model.named_modules():
            if isinstance(layer, LoraLayer) and ADAPTER in layer.lora_A:
                a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
                lora_names += [f"{mod_name}.lora_A.{ADAPTER}.weight", f"{mod_name}.lora_B.{ADAPTER}.weight"]
                lora_params += [a, b]
                factors += [layer.scaling[ADAPTER]] * 2
        decay, no_decay = ([], [], []), ([], [], [])
        for n, p in self.head_parameters(model):
            grp = no_decay if any(k in n for k in NO_DECAY_KEYS) else decay
            grp[0].append(n), grp[1].append(p), grp[2].append(None)
        groups = [{"params": lora_params + decay[1], "names": lora_names + decay[0],
                   "scaling_factors": factors + decay[2], "weight_decay": weight_decay, "lr": lr}]
        if no_decay[1]:
            groups.append({"params": no_decay[1], "names": no_decay[0], "scaling_factors": no_decay[2],
                           "weight_decay": 0.0, "lr": lr})
        return LoraFAOptimizer(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        state = super().state_dict(model)
        state.update({n: p.detach().clone() for n, p in self.frozen_a(model)})
        return state
