"""`DcftModel`: DCFT as a peft `BaseTuner` (what `get_peft_model(model, DcftConfig(...))` builds),
plus the two things peft's machinery does not do for us: the orthogonal regulariser of paper
eq. 4 (an explicit loss term; peft's wrappers would skip a tuner-level loss on some paths) and an
exact conversion to LoRA (DCFT's Delta = M G is a LoRA of rank k*d; peft's `convert_to_lora`
goes through an SVD instead).

Targets are checked all at once before the first module is replaced, however they are named
(list, regex, None for the defaults, "all-linear", layers_to_transform, or the keys of a state
dict). Mixed-adapter batches use peft's mechanism: `PeftModel.forward(..., adapter_names=[...])`
and `generate` enter `_enable_peft_forward_hooks`, which hands the names to every DCFT layer
(and every `modules_to_save` wrapper) through forward pre-hooks.

Default targets (`target_modules=None`) are the paper's "all" set (q, k, v, attention output,
FFN in and out; paper Sec. 4.1) per transformers `model_type`, the pooler never included.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator, Optional

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, _maybe_include_all_linear_layers
from peft.utils.other import AuxiliaryTrainingWrapper, get_pattern_key
from torch import nn

from dcft.methods.dcft import ops
from dcft.methods.dcft.layer import shape_error
from dcft.methods.dcft.tuner.layer import BASE_ADAPTER, DcftLayer, DcftLinear

_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# model_type -> module names (suffix match) of the paper's "all" target set
DEFAULT_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "key", "value", "output.dense", "intermediate.dense"],  # output.dense: attention + FFN out
    "roberta": ["query", "key", "value", "output.dense", "intermediate.dense"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "output.dense", "intermediate.dense"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],  # Conv1D layers; c_proj is attention and FFN output
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}


class DcftModel(BaseTuner):
    """peft tuner for DCFT: replaces each target `nn.Linear` / `Conv1D` by a `DcftLinear`."""

    prefix: str = "dcft_"
    tuner_layer_cls = DcftLayer
    target_module_mapping = DEFAULT_TARGETS

    def inject_adapter(self, model: nn.Module, adapter_name: str, autocast_adapter_dtype: bool = True,
                       low_cpu_mem_usage: bool = False, state_dict: Optional[dict[str, torch.Tensor]] = None) -> None:
        """peft's `inject_adapter`; the model and state dict are kept for the all-targets check that
        `_prepare_adapter_config` runs before any module is replaced."""
        self._injecting = (model, state_dict)
        try:
            super().inject_adapter(model, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype,
                                   low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict)
        finally:
            self._injecting = None

    def _prepare_adapter_config(self, peft_config, model_config: dict):
        if peft_config.target_modules is None and model_config.get("model_type") not in DEFAULT_TARGETS:
            raise ValueError(f"DcftConfig.target_modules=None: no default targets for model_type "
                             f"{model_config.get('model_type')!r}; name the modules (a list of names or one "
                             f"regex) or use a model type with defaults: {', '.join(DEFAULT_TARGETS)}")
        peft_config = super()._prepare_adapter_config(peft_config, model_config)
        model, state_dict = getattr(self, "_injecting", None) or (self.model, None)
        self._check_every_target_fits(peft_config, model, state_dict)
        return peft_config

    def _matched_modules(self, config, model: nn.Module, state_dict=None) -> Iterator[tuple[str, nn.Module]]:
        """The modules `inject_adapter` will replace, found by its rules: the keys of `state_dict`
        when one is given, else the config's targets ("all-linear" expanded by peft's own function,
        on a copy), skipping modules inside existing tuner layers."""
        if state_dict is not None:
            wanted = {k.rsplit("." + self.prefix, 1)[0].removeprefix("_orig_mod.") for k in state_dict}
            matches = lambda key: key.removeprefix("_orig_mod.") in wanted  # noqa: E731
        else:
            expanded = _maybe_include_all_linear_layers(copy.copy(config), model)
            matches = partial(self._check_target_module_exists, expanded)
        named = list(model.named_modules())
        inside = tuple(key + "." for key, module in named if isinstance(module, BaseTunerLayer))
        for key, module in named:
            if key and not key.startswith(inside) and matches(key):
                yield key, module

    def _check_every_target_fits(self, config, model: nn.Module, state_dict=None) -> None:
        """Every module about to be replaced is an `nn.Linear` / `Conv1D` whose sizes fit its kernel
        and stride; all failures are reported in one error before any module changes."""
        from dcft.methods.dcft.layer import base_sizes

        errors = []
        for key, module in self._matched_modules(config, model, state_dict):
            base = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
            try:
                din, dout, _ = base_sizes(base, key)
            except TypeError as e:
                errors.append(f"- {e}")
                continue
            cfg = self._module_config(config, key)
            if error := shape_error(key, din, dout, cfg.kernel, cfg.stride):
                errors.append("- " + error)
        if errors:
            raise ValueError(f"DCFT does not fit {len(errors)} target module(s); nothing was changed:\n"
                             + "\n".join(errors[:10]) + ("\n..." if len(errors) > 10 else ""))

    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any):
        """peft's hook for mixed-adapter batches: with `adapter_names` (one adapter name per input row,
        "__base__" for the base model) every DCFT layer and `modules_to_save` wrapper gets the names
        as a forward keyword for the duration of the call. As peft's LoRA: inference only, names
        must exist, and with beam search each name is repeated per beam (not for an encoder)."""
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            yield
            return
        if self.training:
            raise ValueError("Cannot pass `adapter_names` when the model is in training mode.")
        if isinstance(adapter_names, str) or not all(isinstance(n, str) for n in adapter_names):
            raise TypeError(f"Got adapter names {adapter_names!r}, expected a list of str (one per input row).")
        known = {name for m in self.model.modules() if isinstance(m, DcftLayer) for name in m.dcft_A}
        unknown = {n for n in adapter_names if n != BASE_ADAPTER} - known
        if unknown:
            raise ValueError(f"Trying to infer with non-existing adapter(s): {', '.join(sorted(unknown))}")
        per_row = list(adapter_names)
        beams = kwargs.get("num_beams")
        if isinstance(beams, int) and beams > 1:  # generate repeats each input row num_beams times
            per_row = [n for n in adapter_names for _ in range(beams)]
        handles = _hook_adapter_names(self.model, per_row)
        encoder = _encoder(self.model) if per_row != list(adapter_names) else None
        if encoder is not None:  # hooked after: the encoder's own rows (not repeated per beam) win
            handles += _hook_adapter_names(encoder, list(adapter_names))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        """Put `new_module` in place of `child` and move its DCFT tensors to the base weight's device.
        (peft's default also copies `child.weight` onto modules without a base layer, which breaks
        unloading a `modules_to_save` head that has no `weight`, e.g. RoBERTa's classification head
        or DeBERTa's pooler; LoRA overrides it the same way.)"""
        setattr(parent, child_name, new_module)
        if hasattr(child, "base_layer"):
            child = child.base_layer
        weight = getattr(child, "weight", None)
        if not isinstance(weight, torch.Tensor):
            weight = next(child.parameters(), None)
        if weight is None:
            return
        for name, module in new_module.named_modules():
            if self.prefix in name and not any(p.is_meta for p in module.parameters()):
                module.to(weight.device)

    @staticmethod
    def _module_config(config, key: str):
        """The harness `Config` for module `key`: kernel / stride from the patterns, else global."""
        kernel = stride = None
        if config.kernel_pattern:
            k = get_pattern_key(list(config.kernel_pattern), key)
            kernel = config.kernel_pattern.get(k)
        if config.stride_pattern:
            k = get_pattern_key(list(config.stride_pattern), key)
            stride = config.stride_pattern.get(k)
        return config.harness_config(kernel=kernel, stride=stride)

    def _create_and_replace(self, dcft_config, adapter_name, target, target_name, parent, current_key,
                            **optional_kwargs) -> None:
        if current_key is None:
            raise ValueError("current_key must not be None")
        cfg = self._module_config(dcft_config, current_key)
        if isinstance(target, DcftLayer):
            target.update_layer(adapter_name, cfg, inference_mode=dcft_config.inference_mode, name=current_key)
            return
        new_module = DcftLinear(target, adapter_name, cfg, name=current_key,
                                inference_mode=dcft_config.inference_mode)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an added adapter is not trainable until it is set active
        self._replace_module(parent, target_name, new_module, target)


def _set_adapter_names(module, args, kwargs, adapter_names):
    kwargs["adapter_names"] = adapter_names
    return args, kwargs


def _hook_adapter_names(root: nn.Module, adapter_names: list[str]) -> list:
    """Forward pre-hooks giving `adapter_names` to every DCFT layer and modules_to_save wrapper."""
    hook = partial(_set_adapter_names, adapter_names=adapter_names)
    return [m.register_forward_pre_hook(hook, with_kwargs=True) for m in root.modules()
            if isinstance(m, (DcftLayer, AuxiliaryTrainingWrapper))]


def _encoder(model: nn.Module) -> Optional[nn.Module]:
    """The encoder of an encoder-decoder model, else None (transformers v5 returns the model itself)."""
    get = getattr(model, "get_encoder", None)
    encoder = get() if callable(get) else None
    return None if encoder is model else encoder


def dcft_tuner_layers(model: nn.Module) -> list[tuple[str, DcftLayer]]:
    """The peft DCFT layers of a model (a PeftModel or the model inside it), with their names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DcftLayer)]


def orthogonal_loss(model: nn.Module, adapter_name: Optional[str] = None) -> Optional[torch.Tensor]:
    """The orthogonal regulariser of paper eq. 4 for one adapter of a peft DCFT model, to add to the
    task loss yourself: gamma * mean over layers of (||A A^T - I||_F, ||B^T B - I||_F), gamma the
    adapter's `reg_orth_coef` (the harness's `DCFT.extra_loss`, same function). `adapter_name`
    defaults to the active adapter. None when gamma = 0."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        raise ValueError("orthogonal_loss needs a model made by get_peft_model(model, DcftConfig(...))")
    if adapter_name is None:
        active = getattr(model, "active_adapter", None)
        adapter_name = active if isinstance(active, str) else next(iter(configs))
    if adapter_name not in configs:
        raise ValueError(f"adapter {adapter_name!r} is not in this model; it has {sorted(configs)}")
    pairs = [(layer.dcft_A[adapter_name], layer.dcft_B[adapter_name])
             for _, layer in dcft_tuner_layers(model) if adapter_name in layer.dcft_A]
    return ops.orth_loss(pairs, configs[adapter_name].reg_orth_coef)


LORA_BIAS = {"none": "none", "all": "all", "dcft_only": "lora_only"}  # DcftConfig.bias -> LoraConfig.bias
PEFT_PREFIX = "base_model.model."  # how a PeftModel's saved tensors are named


def _adapter_tensor(key: str) -> Optional[tuple[str, str]]:
    """(module name without the PeftModel prefix, "A" / "B" / "C") of a saved DCFT tensor, else None."""
    module, _, leaf = key.rpartition(".")
    if leaf not in DcftLayer.adapter_layer_names:
        return None
    return module.removeprefix(PEFT_PREFIX), leaf.removeprefix(DcftModel.prefix)


@torch.no_grad()
def lora_from_state(config, state: dict[str, torch.Tensor], conv1d: frozenset[str] = frozenset()):
    """(LoraConfig, state_dict) of the LoRA equal to a saved DCFT adapter: `config` its DcftConfig,
    `state` its tensors as `save_pretrained` names them (`base_model.model.<module>.dcft_A`, ...),
    `conv1d` the modules that are GPT-2 `Conv1D` layers (LoRA's fan_in_fan_out). Each module's
    kernel / stride / scaling come from the config (its patterns included); rank k*d, alpha = rank
    (scaling 1), lora_B @ lora_A = scaling * Delta^T exactly (`lora_factors`, no SVD). Every other
    tensor (modules_to_save, biases for `bias` != "none") is carried over unchanged."""
    from peft import LoraConfig

    from dcft.methods.dcft.tuner.layer import lora_factors

    parts: dict[str, dict[str, torch.Tensor]] = {}
    out = {}
    for key, value in state.items():
        found = _adapter_tensor(key)
        if found is None:
            out[key] = value
        else:
            parts.setdefault(found[0], {})[found[1]] = value
    if not parts:
        raise ValueError("the adapter has no DCFT tensors (dcft_A, dcft_B, dcft_C)")
    ranks = {}
    for name, t in sorted(parts.items()):
        if set(t) != {"A", "B", "C"}:
            raise ValueError(f"DCFT module {name!r} lacks tensor(s) {sorted({'A', 'B', 'C'} - set(t))}")
        cfg = DcftModel._module_config(config, name)
        if tuple(t["C"].shape) != (cfg.kernel, cfg.kernel):
            raise ValueError(f"DCFT module {name!r}: kernel tensor C has shape {tuple(t['C'].shape)}, the config "
                             f"says kernel {cfg.kernel} (adapter file and config disagree)")
        lora_a, lora_b = lora_factors(t["A"], t["B"], t["C"], cfg.step, cfg.scaling)
        out[f"{PEFT_PREFIX}{name}.lora_A.weight"], out[f"{PEFT_PREFIX}{name}.lora_B.weight"] = lora_a, lora_b
        ranks[name] = lora_a.shape[0]
    kinds = {name in conv1d for name in ranks}
    if len(kinds) > 1:
        raise ValueError("a model mixing nn.Linear and Conv1D targets needs two LoRA configs (fan_in_fan_out "
                         "differs); convert them separately")
    rank = max(ranks.values())
    others = {k: v for k, v in ranks.items() if v != rank}
    lora_config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=sorted(ranks), fan_in_fan_out=kinds == {True},
        lora_dropout=config.dropout, bias=LORA_BIAS[config.bias], rank_pattern=others, alpha_pattern=dict(others),
        modules_to_save=list(dict.fromkeys(config.modules_to_save)) if config.modules_to_save else None,
        base_model_name_or_path=config.base_model_name_or_path, task_type=config.task_type)
    return lora_config, out


def to_lora(model: nn.Module, adapter_name: str = "default"):
    """(LoraConfig, state_dict) of a LoRA equal to DCFT adapter `adapter_name` of a `PeftModel`,
    exactly (`lora_from_state` of what `save_pretrained` would write). Load it with
    `set_peft_model_state_dict(get_peft_model(base, lora_config), state_dict)`, or write it with
    `dcft.export_lora`. Works on the meta device (shapes only)."""
    from peft import get_peft_model_state_dict

    configs = getattr(model, "peft_config", None) or {}
    if adapter_name not in configs:
        raise ValueError(f"adapter {adapter_name!r} is not in this model; it has {sorted(configs)}")
    state = get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False)
    conv1d = frozenset(name.removeprefix(PEFT_PREFIX) for name, layer in dcft_tuner_layers(model)
                       if layer.transposed and adapter_name in layer.dcft_A)
    return lora_from_state(configs[adapter_name], state, conv1d)
