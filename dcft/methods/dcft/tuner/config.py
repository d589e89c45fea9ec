"""`DcftConfig`: DCFT's configuration as a peft `PeftConfig` (what `adapter_config.json` holds).

Defaults are those of the harness (`dcft.methods.dcft.Config`): the authors' code where paper and
code differ (alpha = 32, r = 2 as scaling alpha / (r + 1e-5); A, B, C ~ N(0, 0.02), so the update
is not zero at step 0; `init="zero"` starts at Delta = 0). Validation reuses the harness checks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Union

from peft.config import PeftConfig


class DcftPeftType(str, enum.Enum):
    """Our own `peft_type` value. peft 0.21's `PeftType` enum is closed (`register_peft_method`
    refuses names not in it); a str enum compares and hashes equal to "DCFT", which is what
    `adapter_config.json` stores and what peft looks up in its mappings when loading."""

    DCFT = "DCFT"


@dataclass
class DcftConfig(PeftConfig):
    """Configuration of a DCFT adapter (paper Sec. 3); one field per hyperparameter."""

    kernel: int = field(default=2, metadata={"help": "kernel size d of the transposed convolution (paper: 2..12); "
                                                    "2 = the authors' code and the paper's best row, 8 = its most efficient"})
    stride: Optional[int] = field(default=None, metadata={"help": "stride s, 1 <= s <= d; None means s = d"})
    rank: int = field(default=1, metadata={"help": "rank k of the subspace matrix F = A^T B^T (paper: 1)"})
    alpha: float = field(default=32.0, metadata={"help": "scaling numerator: update scaled by alpha / (r + 1e-5)"})
    r: float = field(default=2.0, metadata={"help": "scaling denominator (authors' code); sets no shape"})
    dropout: float = field(default=0.0, metadata={"help": "dropout probability on the adapter's input"})
    init: str = field(default="normal", metadata={"help": "'normal': A, B, C ~ N(0, init_std) (the authors'); 'zero': C = 0; "
                                                             "'lora': B = 0, A and C at fan-in scale"})
    init_std: float = field(default=0.02, metadata={"help": "std of the normal initialisation"})
    impl: str = field(default="fast", metadata={"help": "'fast' (never builds Delta) or 'reference' (conv_transpose2d)"})
    reg_orth_coef: float = field(default=0.1, metadata={
        "help": "gamma of the orthogonal regulariser (paper eq. 4), read by dcft.orthogonal_loss; 0 disables"})
    target_modules: Optional[Union[list[str], str]] = field(default=None, metadata={
        "help": "module names (suffix match) or one regex (full match); None: the paper's 'all' set for known "
                "model types (DEFAULT_TARGETS)"})
    exclude_modules: Optional[Union[list[str], str]] = field(default=None, metadata={
        "help": "module names or regex to leave out"})
    layers_to_transform: Optional[Union[list[int], int]] = field(default=None, metadata={
        "help": "only these layer indices (needs target_modules as a list)"})
    layers_pattern: Optional[Union[list[str], str]] = field(default=None, metadata={
        "help": "name of the layer list for layers_to_transform (e.g. 'layers', 'h')"})
    modules_to_save: Optional[list[str]] = field(default=None, metadata={
        "help": "extra modules trained and saved in full, e.g. ['classifier', 'pooler'] (peft adds the classifier "
                "for SEQ_CLS, never DeBERTa's pooler)"})
    kernel_pattern: dict = field(default_factory=dict, metadata={
        "help": "module name or regex -> kernel, overriding `kernel` for those modules"})
    stride_pattern: dict = field(default_factory=dict, metadata={
        "help": "module name or regex -> stride, overriding `stride` for those modules"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = DcftPeftType.DCFT
        self.harness_config()  # the harness's checks: a bad value fails here, naming the key
        for key, pattern in (("kernel_pattern", self.kernel_pattern), ("stride_pattern", self.stride_pattern)):
            for name, value in pattern.items():
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"DcftConfig.{key}[{name!r}]={value!r} is not an integer >= 1")
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)
        if isinstance(self.target_modules, str) and (self.layers_to_transform is not None
                                                     or self.layers_pattern is not None):
            raise ValueError("DcftConfig: layers_to_transform / layers_pattern need target_modules as a list of "
                             f"names, not the regex {self.target_modules!r}")

    def harness_config(self, kernel: Optional[int] = None, stride: Optional[int] = None):
        """The same hyperparameters as the harness's `Config` (validated there); `kernel` /
        `stride` override the global values, as `kernel_pattern` / `stride_pattern` do per module."""
        from dcft.methods.dcft.config import Config

        kernel = self.kernel if kernel is None else kernel
        stride = self.stride if stride is None else stride
        try:
            return Config(kernel=kernel, stride=stride, rank=self.rank, alpha=self.alpha, r=self.r,
                          dropout=self.dropout, init=self.init, init_std=self.init_std,
                          reg_orth_coef=self.reg_orth_coef, impl=self.impl)
        except ValueError as e:
            raise ValueError(str(e).replace("method.", "DcftConfig.")) from None
