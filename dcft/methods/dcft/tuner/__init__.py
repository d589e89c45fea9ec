"""DCFT as a peft tuner: `DcftConfig`, `DcftModel`, `DcftLinear`, and `register()`.

peft 0.21's `register_peft_method` accepts only names already in its closed `PeftType` enum, so
`register()` does what it does by hand: it puts our `DcftPeftType.DCFT` ("DCFT", a str enum) into
peft's config, tuner and prefix mappings, which is all `get_peft_model`, `save_pretrained`,
`PeftConfig.from_pretrained` and `PeftModel.from_pretrained` consult (checked against the peft
range pinned in pyproject.toml). It is idempotent and refuses to overwrite another method's entry.
`import dcft` arranges for it to run as soon as peft is imported (see `dcft.register`).
"""

from __future__ import annotations

from dcft.methods.dcft.tuner.config import DcftConfig, DcftPeftType
from dcft.methods.dcft.tuner.layer import DcftLayer, DcftLinear
from dcft.methods.dcft.tuner.model import (
    DEFAULT_TARGETS,
    DcftModel,
    dcft_tuner_layers,
    lora_from_state,
    orthogonal_loss,
    to_lora,
)

__all__ = ["DcftConfig", "DcftPeftType", "DcftLayer", "DcftLinear", "DcftModel", "DEFAULT_TARGETS",
           "dcft_tuner_layers", "orthogonal_loss", "to_lora", "lora_from_state", "register"]

PEFT_TYPE = DcftPeftType.DCFT


def register() -> None:
    """Make DCFT a peft method (idempotent): peft_type "DCFT" -> DcftConfig, DcftModel, prefix "dcft_"."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    entries = ((PEFT_TYPE_TO_CONFIG_MAPPING, DcftConfig), (PEFT_TYPE_TO_TUNER_MAPPING, DcftModel),
               (PEFT_TYPE_TO_PREFIX_MAPPING, DcftModel.prefix))
    for mapping, value in entries:
        current = mapping.get(PEFT_TYPE)
        if current is not None and current != value:
            raise KeyError(f"peft already has a method registered as {PEFT_TYPE.value!r} ({current!r}); "
                           f"dcft cannot register DCFT under that name")
    taken = [t for t, p in PEFT_TYPE_TO_PREFIX_MAPPING.items() if p == DcftModel.prefix and t != PEFT_TYPE]
    if taken:
        raise KeyError(f"the adapter prefix {DcftModel.prefix!r} is already used by peft method {taken[0]!r}")
    for mapping, value in entries:
        mapping[PEFT_TYPE] = value


register()  # importing the tuner is enough to use it with peft (dcft.register does the same on peft's import)
