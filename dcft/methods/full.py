"""Full fine-tuning: every parameter of the model trains (the reference point of every PEFT paper;
DeBERTaV3-base 184M, RoBERTa-large 355M, DeBERTaV2-xxlarge 1.5B parameters).

The method's own parameters are all non-head parameters (the head is counted apart, as for every method).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from torch import nn

from dcft.methods.base import Method
from dcft.harness.models import head_parameter_names


@dataclass
class Config:
    """Full fine-tuning: all backbone and head parameters train."""

    name: str = "full"  # registry key


class Full(Method):
    """Everything trainable; own parameters = the backbone (all non-head parameters)."""

    name = "full"
    can_merge = True  # merge is a no-op: the weights are trained in place, no extra module

    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        heads = set(head_parameter_names(model))
        return ((n, p) for n, p in model.named_parameters() if n not in heads)
