"""`DcftConfig`: DCFT's configuration as a peft `PeftConfig` (what `adapter_config.json` holds).

Defaults are those of the harness (`dcft.methods.dcft.Config`): the authors' code where paper and
code differ (alpha = 32, r = 2 as scaling alpha / (r + 1e-5); A, B, C ~ N(0, 0.02), so the update
is not zero at step 0; `init="zero"` and `init="lora"` start at Delta = 0). Validation reuses the
harness checks. `init_weights` and `bias` follow peft's conventions (LoRA's `init_lora_weights`
and `bias`), so generic peft tooling can set them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Union

from peft.config import PeftConfig

BIASES = ("none", "all", "dcft_only")  # peft's choices, named as LoRA's ("lora_only" -> "dcft_only")


class DcftPeftType(str, enum.Enum):
    """Our own `peft_type` value. peft 0.21's `PeftType` enum is closed (`register_peft_method`
    refuses names not in it); a str enum compares and hashes equal to "DCFT", which is what
    `adapter_config.json` stores and what peft looks up in its mappings when loading."""

    DCFT = "DCFT"


@dataclass
class DcftConfig(PeftConfig):
    """Configuration of a DCFT adapter (paper Sec. 3); one field per hyperparameter.

    Start values: the default `init="normal"` is the authors' (A, B, C ~ N(0, 0.02)), so a fresh
    adapter already changes the model's output: unlike LoRA, DCFT is NOT the identity at step 0,
    and `disable_adapter()` on an untrained model gives a different output. For an identity at
    step 0 (what most peft tooling assumes) name one of the two inits that start at Delta = 0:
    `init="zero"` (C = 0, A and B ~ N(0, init_std)) or `init="lora"` (B = 0, A and C at LoRA's
    fan-in scale). `init_weights` is peft's spelling of the same choice: True uses `init`, False
    draws a random non-identity start (A, B, C ~ N(0, init_std), whatever `init` says; for tests),
    a name ("normal", "zero", "lora") sets `init`.
    """

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
    init_weights: Union[bool, str] = field(default=True, metadata={
        "help": "peft's convention: True = the start `init` names; False = random, not the identity (A, B, C ~ "
                "N(0, init_std) whatever `init` says; for tests); a name (normal, zero, lora) sets `init`"})
    bias: str = field(default="none", metadata={
        "help": "biases trained and saved with the adapter, as LoRA's `bias`: 'none'; 'all' (every bias of the "
                "model); 'dcft_only' (the biases of the adapted layers). Biases are not undone by "
                "disable_adapter(); at most one adapter of a model may train biases"})
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
        self._resolve_init_weights()
        if self.bias not in BIASES:
            raise ValueError(f"DcftConfig.bias={self.bias!r} is not known; valid: {', '.join(BIASES)}")
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

    def _resolve_init_weights(self) -> None:
        """`init_weights` as a name sets `init` (a different explicit `init` is an error)."""
        from dcft.methods.dcft.config import INITS

        value = self.init_weights
        if isinstance(value, bool):
            return
        if not isinstance(value, str) or value not in INITS:
            raise ValueError(f"DcftConfig.init_weights={value!r} is not known; valid: True, False, "
                             f"{', '.join(INITS)}")
        default_init = type(self).__dataclass_fields__["init"].default
        if self.init not in (default_init, value):
            raise ValueError(f"DcftConfig.init_weights={value!r} and init={self.init!r} name two different "
                             f"starts; set one of them")
        self.init = value

    def start(self) -> str:
        """The init the layers use: `init`, or "normal" when `init_weights=False`."""
        return "normal" if self.init_weights is False else self.init

    def harness_config(self, kernel: Optional[int] = None, stride: Optional[int] = None):
        """The same hyperparameters as the harness's `Config` (validated there); `kernel` /
        `stride` override the global values, as `kernel_pattern` / `stride_pattern` do per module."""
        from dcft.methods.dcft.config import Config

        kernel = self.kernel if kernel is None else kernel
        stride = self.stride if stride is None else stride
        try:
            return Config(kernel=kernel, stride=stride, rank=self.rank, alpha=self.alpha, r=self.r,
                          dropout=self.dropout, init=self.start(), init_std=self.init_std,
                          reg_orth_coef=self.reg_orth_coef, impl=self.impl)
        except ValueError as e:
            raise ValueError(str(e).replace("method.", "DcftConfig.")) from None
