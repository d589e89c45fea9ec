"""`DcftModel`: DCFT as a peft `BaseTuner` (what `get_peft_model(model, DcftConfig(...))` builds),
plus the two things peft's machinery does not do for us: the orthogonal regulariser of paper
eq. 4 (an explicit loss term; peft's wrappers would skip a tuner-level loss on some paths) and an
exact conversion to LoRA (DCFT's Delta = M G is a LoRA of rank k*d; peft's `convert_to_lora`
goes through an SVD instead).

Default targets (`target_modules=None`) are the paper's "all" set (q, k, v, attention output,
FFN in and out; paper Sec. 4.1) per transformers `model_type`, the pooler never included.
"""

from __future__ import annotations

from typing import Optional

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_target_module_exists
from peft.utils.other import get_pattern_key
from torch import nn

from dcft.methods.dcft import ops
from dcft.methods.dcft.layer import shape_error
from dcft.methods.dcft.tuner.layer import DcftLayer, DcftLinear

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

    def _prepare_adapter_config(self, peft_config, model_config: dict):
        if peft_config.target_modules is None and model_config.get("model_type") not in DEFAULT_TARGETS:
            raise ValueError(f"DcftConfig.target_modules=None: no default targets for model_type "
                             f"{model_config.get('model_type')!r}; name the modules (a list of names or one "
                             f"regex) or use a model type with defaults: {', '.join(DEFAULT_TARGETS)}")
        peft_config = super()._prepare_adapter_config(peft_config, model_config)
        self._check_every_target_fits(peft_config)
        return peft_config

    def _check_every_target_fits(self, config) -> None:
        """Every matched module's sizes are checked against its kernel / stride before any module
        is replaced; all failures are reported in one error (nothing is changed)."""
        if isinstance(config.target_modules, str) and config.target_modules == "all-linear":
            return  # expanded later by peft; each module is still checked when it is built
        errors = []
        for key, module in self.model.named_modules():
            if not check_target_module_exists(config, key):
                continue
            base = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
            if not isinstance(base, nn.Module) or not hasattr(base, "weight") or base.weight.dim() != 2:
                continue
            cfg = self._module_config(config, key)
            din, dout = _sizes(base)
            if din is not None and (error := shape_error(key, din, dout, cfg.kernel, cfg.stride)):
                errors.append("- " + error)
        if errors:
            raise ValueError(f"DCFT does not fit {len(errors)} target module(s); nothing was changed:\n"
                             + "\n".join(errors[:10]) + ("\n..." if len(errors) > 10 else ""))

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


def _sizes(module: nn.Module) -> tuple[Optional[int], Optional[int]]:
    from dcft.methods.dcft.layer import base_sizes

    try:
        din, dout, _ = base_sizes(module)
    except TypeError:
        return None, None
    return din, dout


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


@torch.no_grad()
def to_lora(model: nn.Module, adapter_name: str = "default"):
    """(LoraConfig, state_dict) of a LoRA equal to DCFT adapter `adapter_name`, exactly (rank k*d,
    alpha = rank so scaling 1; lora_B @ lora_A = scaling * Delta^T from `ops.factors`, no SVD).
    Load it with `set_peft_model_state_dict(get_peft_model(base, lora_config), state_dict)` or save
    both with `lora_config.save_pretrained(dir)` and safetensors. modules_to_save are carried over."""
    from peft import LoraConfig

    configs = getattr(model, "peft_config", None) or {}
    if adapter_name not in configs:
        raise ValueError(f"adapter {adapter_name!r} is not in this model; it has {sorted(configs)}")
    config = configs[adapter_name]
    prefix = "base_model.model."
    state, ranks, conv1d = {}, {}, []
    for name, layer in dcft_tuner_layers(model):
        if adapter_name not in layer.dcft_A:
            continue
        lora_a, lora_b = layer.lora_factors(adapter_name)
        key = name.removeprefix(prefix)
        if layer.transposed:
            conv1d.append(key)
        state[f"{name}.lora_A.weight"] = lora_a
        state[f"{name}.lora_B.weight"] = lora_b
        ranks[key] = lora_a.shape[0]
    if not state:
        raise ValueError(f"the model has no DCFT layers with adapter {adapter_name!r}")
    if conv1d and len(conv1d) != len(ranks):
        raise ValueError("to_lora: a model mixing nn.Linear and Conv1D targets needs two LoRA configs "
                         "(fan_in_fan_out differs); convert them separately")
    rank = max(ranks.values())
    lora_config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=sorted(ranks), fan_in_fan_out=bool(conv1d),
        rank_pattern={k: v for k, v in ranks.items() if v != rank},
        alpha_pattern={k: v for k, v in ranks.items() if v != rank},
        modules_to_save=list(config.modules_to_save) if config.modules_to_save else None,
        base_model_name_or_path=config.base_model_name_or_path, task_type=config.task_type)
    if config.modules_to_save:
        from peft.utils.other import ModulesToSaveWrapper

        for mname, module in model.named_modules():
            if isinstance(module, ModulesToSaveWrapper):
                for pname, p in module.modules_to_save[adapter_name].named_parameters():
                    state[f"{mname}.{pname}"] = p.detach().clone()
    return lora_config, state  # peft's LoRA on Conv1D (fan_in_fan_out) takes the same A, B
