"""DCFT: Parameter-Efficient Fine-Tuning via Deconvolution in Subspace (Zhang et al., COLING 2025).

`Config` is the method's Hydra schema, `DCFT` its `Method`, `DCFTLinear` the adapted layer
(paper Sec. 3), `ops` the arithmetic both layers share, `api` the few functions a researcher needs
outside the harness, and `tuner` DCFT as a peft method (`DcftConfig`, `DcftModel`, imported on use).
"""

from dcft.methods.dcft.api import (
    apply_dcft,
    count_parameters,
    load_adapter,
    merge_dcft,
    save_adapter,
    unmerge_dcft,
)
from dcft.methods.dcft.config import Config
from dcft.methods.dcft.layer import DCFTLinear
from dcft.methods.dcft.method import DCFT, dcft_layers

__all__ = ["Config", "DCFT", "DCFTLinear", "dcft_layers", "apply_dcft", "count_parameters", "merge_dcft",
           "unmerge_dcft", "save_adapter", "load_adapter"]
