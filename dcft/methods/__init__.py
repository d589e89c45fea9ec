"""Fine-tuning methods behind one interface (`dcft.methods.base.Method`), chosen by name.

Each method lives in its own module and defines a `Config` dataclass (its Hydra schema,
`conf/method/<name>.yaml` extends it) and a `Method` subclass. The registry maps the
`method.name` of a config to `module:Class`, imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from dcft.methods.base import Method, ParamCount

REGISTRY: dict[str, str] = {
    "dcft": "dcft.methods.dcft:DCFT",
    "lora": "dcft.methods.lora:LoRA",
    "adalora": "dcft.methods.adalora:AdaLoRA",
    "sora": "dcft.methods.sora:SoRA",
    "lorafa": "dcft.methods.lorafa:LoRAFA",
    "bitfit": "dcft.methods.bitfit:BitFit",
    "hadapter": "dcft.methods.bottleneck:HAdapter",
    "padapter": "dcft.methods.bottleneck:PAdapter",
    "full": "dcft.methods.full:Full",
}


def method_class(name: str) -> type[Method]:
    """The `Method` subclass registered under `name`."""
    if name not in REGISTRY:
        raise ValueError(f"method={name!r} is not known; valid: {', '.join(REGISTRY)}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def config_class(name: str) -> type:
    """The `Config` dataclass (Hydra schema) of the method registered under `name`: the method
    class's own `config_class` attribute if it has one (several methods sharing a module, e.g.
    HAdapter / PAdapter), else the module's `Config`."""
    own = getattr(method_class(name), "config_class", None)
    if own is not None:
        return own
    return importlib.import_module(REGISTRY[name].partition(":")[0]).Config


def build_method(cfg: Mapping[str, Any] | Any) -> Method:
    """A method from its config (a mapping or `DictConfig` with at least `name`)."""
    name = cfg["name"] if isinstance(cfg, Mapping) or hasattr(cfg, "keys") else cfg.name
    cls = method_class(name)
    conf_cls = config_class(name)
    if not isinstance(cfg, conf_cls):
        from omegaconf import DictConfig, OmegaConf

        data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        cfg = conf_cls(**data)
    return cls(cfg)


__all__ = ["Method", "ParamCount", "REGISTRY", "build_method", "method_class", "config_class"]
