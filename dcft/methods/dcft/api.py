"""DCFT outside the harness, in a few lines (paper Sec. 3):

    from dcft import apply_dcft, count_parameters, save_adapter, load_adapter, merge_dcft

    method = apply_dcft(model, targets="all", kernel=8)   # in place: backbone frozen, head trainable
    print(count_parameters(model))                        # ParamCount(method=..., head=..., total=...)
    loss = model(**batch).loss + method.extra_loss(model) # task loss + orthogonal regulariser (eq. 4)
    save_adapter(model, method, "out/adapter")            # adapter.safetensors + adapter_config.json
    method = load_adapter(fresh_base_model, "out/adapter")# same outputs as `model`
    merge_dcft(model)                                     # W <- W0 + scaling * Delta^T; a plain model again

An adapter directory holds `adapter.safetensors` (A, B, C of every adapted layer and, with
`include_head=True`, the classifier head / pooler, which a task model needs to reproduce its
outputs) and `adapter_config.json` (format version, the `Config`, the adapted module names).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dcft.methods.base import ParamCount
from dcft.methods.dcft.config import Config
from dcft.methods.dcft.layer import subspace_size
from dcft.methods.dcft.method import DCFT, dcft_layers, merge_and_unload
from dcft.harness.models import head_parameter_names, in_out_features, iter_targets, resolve_targets

WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"
FORMAT = "dcft-adapter"
FORMAT_VERSION = 1


def apply_dcft(model: nn.Module, targets: Any = "all", kernel: int = 2, stride: int | None = None,
               **config: Any) -> DCFT:
    """Adapt `model` in place with DCFT and return the method object.

    Every target `nn.Linear` or GPT-2 `Conv1D` (a paper Table 6 set: all, qk, qv, qkv, qkvo; a
    list of module-name suffixes; or a regex on the full name) becomes a `DCFTLinear`; the
    backbone is frozen, A, B, C and the task head are trainable. Further
    keywords are `Config` fields (rank, alpha, r, dropout, init, init_std, reg_orth_coef, impl).
    Raises `ValueError` (nothing changed) if a value is invalid or a module's sizes do not fit.
    """
    method = DCFT(Config(kernel=kernel, stride=stride, targets=targets, **config))
    method.apply(model)
    return method


def count_parameters(model: nn.Module) -> ParamCount:
    """(method, head, total) parameter counts: `method` is DCFT's A, B, C (the paper's
    "#Params"), `head` the classifier head and pooler. Touches no data (meta device works)."""
    return DCFT().count(model)


def merge_dcft(model: nn.Module, unload: bool = True) -> nn.Module:
    """Fold every DCFT update into its base weight (W <- W0 + scaling * Delta^T).

    `unload=True` (default) also puts each base `nn.Linear` / `Conv1D` back in place of its DCFT
    wrapper, so the result is a plain transformers model that `save_pretrained` writes and
    `from_pretrained` reloads with identical outputs; `unload=False` keeps the wrappers (merged,
    so `unmerge_dcft` can undo it)."""
    return merge_and_unload(model) if unload else DCFT().merge(model)


def unmerge_dcft(model: nn.Module) -> nn.Module:
    """Undo `merge_dcft(model, unload=False)`."""
    if not dcft_layers(model):
        raise ValueError("the model has no DCFT layers to unmerge (merge_dcft(model) unloads them; "
                         "use merge_dcft(model, unload=False) to be able to unmerge)")
    return DCFT().unmerge(model)


def save_adapter(model: nn.Module, method: DCFT, directory: str | Path, include_head: bool = True) -> Path:
    """Write `adapter.safetensors` (A, B, C of every DCFT layer, plus the head and pooler when
    `include_head`) and `adapter_config.json` to `directory` (created if needed)."""
    from safetensors.torch import save_file

    layers = dcft_layers(model)
    if not layers:
        raise ValueError("the model has no DCFT layers: call apply_dcft(model, ...) before save_adapter")
    named = list(method.own_parameters(model)) + (list(method.head_parameters(model)) if include_head else [])
    if any(p.is_meta for _, p in named):
        raise ValueError("the model is on the meta device: it has no values to save")
    tensors = {n: p.detach().to("cpu").contiguous() for n, p in named}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "producer": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": "dcft",
        "config": method.cfg.to_dict(),
        "model_type": getattr(getattr(model, "config", None), "model_type", None),
        "target_modules": [n for n, _ in layers],
        "include_head": include_head,
        "head_tensors": [n for n, _ in named if n not in dict(method.own_parameters(model))],
    }
    from dcft import __version__

    meta["dcft_version"] = __version__
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    """The parsed `adapter_config.json` of an adapter directory, checked."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"adapter directory {str(directory)!r} does not exist")
    for f in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / f).is_file():
            raise FileNotFoundError(f"adapter directory {str(directory)!r} has no {f} (written by save_adapter)")
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{directory / CONFIG_FILE} is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG_FILE} is not a DCFT adapter config (format != {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory / CONFIG_FILE} has format_version={meta.get('format_version')!r}; "
                         f"this dcft reads version {FORMAT_VERSION}")
    return meta


def load_adapter(base_model: nn.Module, directory: str | Path) -> DCFT:
    """Apply the saved DCFT adapter to a fresh `base_model` (in place) and return the method.

    Everything is checked before the model is changed: the config, the adapted module names,
    and every tensor's name and shape (A: k x din', B: dout' x k, C: d x d, head as the model's).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_adapter_config(directory)
    try:
        cfg = Config(**meta["config"])
    except TypeError as e:
        raise ValueError(f"{directory / CONFIG_FILE}: config does not fit this dcft version: {e}") from e
    method = DCFT(cfg)
    method.validate(base_model, cfg.targets)  # fresh model, kernel/stride fit every target

    names = resolve_targets(base_model, cfg.targets)
    if names != list(meta.get("target_modules", [])):
        saved = set(meta.get("target_modules", []))
        raise ValueError(f"adapter in {str(directory)!r} was saved for other modules: missing in this model "
                         f"{sorted(saved - set(names))[:3]}, not in the adapter {sorted(set(names) - saved)[:3]}")
    expected: dict[str, tuple[int, ...]] = {}
    k, d, s = cfg.rank, cfg.kernel, cfg.step
    for n, m in iter_targets(base_model, names):
        din, dout = in_out_features(m)
        expected[f"{n}.A"] = (k, subspace_size(din, d, s))
        expected[f"{n}.B"] = (subspace_size(dout, d, s), k)
        expected[f"{n}.C"] = (d, d)
    params = dict(base_model.named_parameters())
    if meta.get("include_head"):
        expected.update({n: tuple(params[n].shape) for n in head_parameter_names(base_model)})

    state = load_file(str(directory / WEIGHTS_FILE))
    missing = [n for n in expected if n not in state]
    unexpected = [n for n in state if n not in expected]
    if missing or unexpected:
        raise ValueError(f"{directory / WEIGHTS_FILE} does not fit this model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]} (saved from another model or target set?)")
    adapter_names = {f"{n}.{x}" for n in names for x in "ABC"}
    for n, shape in expected.items():
        if tuple(state[n].shape) != shape:
            why = (f"with kernel={d}, stride={s}, rank={k} (another model or config?)" if n in adapter_names
                   else "(a head for another number of labels or another model?)")
            raise ValueError(f"{directory / WEIGHTS_FILE}: tensor {n!r} has shape {tuple(state[n].shape)}, "
                             f"this model needs {shape} {why}")

    method.apply(base_model)
    params = dict(base_model.named_parameters())
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)
    return method
