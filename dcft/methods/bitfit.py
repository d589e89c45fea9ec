"""BitFit (Ben Zaken et al., ACL 2022, "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models").

Only bias terms train: as in the AdaLoRA reference code (QingruZhang/AdaLoRA), every backbone parameter
whose name contains "bias", LayerNorm biases included (on DeBERTaV3-base also the encoder's
relative-embedding LayerNorm), plus the task head. DeBERTaV3-base: 102,912 parameters (paper: 0.1M).
Nothing is injected; no target set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from torch import nn

from dcft.methods.base import Method
from dcft.harness.models import head_parameter_names


@dataclass
class Config:
    """BitFit (Ben Zaken et al. 2022): train only the backbone's bias terms (and the head)."""

    name: str = "bitfit"  # registry key


class BitFit(Method):
    """Train every backbone parameter named `*bias*`; the head is trained apart."""

    name = "bitfit"
    can_merge = True  # merge is a no-op: the trained biases are the backbone's own, no extra module

    def validate(self, model: nn.Module, targets: str) -> None:
        if not any("bias" in n for n in self._backbone_names(model)):
            raise ValueError("bitfit: the backbone has no bias parameters")

    @staticmethod
    def _backbone_names(model: nn.Module) -> list[str]:
        heads = set(head_parameter_names(model))
        return [n for n, _ in model.named_parameters() if n not in heads]

    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        heads = set(head_parameter_names(model))
        return ((n, p) for n, p in model.named_parameters() if "bias" in n and n not in heads)
