"""Run identity: a run *is* its effective configuration.

The effective configuration is everything that determines a run's outcome, and nothing else:

* `declared` — the composed, resolved config with what cannot change the outcome taken out and
  what a method does not read normalised away:
  - the method's own node only (`method.*`, resolved): the top-level `kernel`, `stride`,
    `targets` and `dcft_hp` keys are inputs to it, so a LoRA run with `kernel=8` is the LoRA run
    without it; a DCFT `stride: null` is written as the kernel it means;
  - `train.epochs` is dropped when `train.max_steps > 0` (it is ignored), `train.warmup_ratio`
    when `train.warmup_steps > 0`, `train.group_by_length` when false (added later; false is the
    loop every older run used); SQuAD-only task keys are dropped for GLUE tasks;
  - keys that change where files go or how the run looks, never what it computes
    (`NEUTRAL_KEYS`: output folder, overwrite, progress bars, checkpoint interval, device
    choice, logging intervals, evaluation batch size, experiment tracker);
  - *where* data and weights live (`data.glue_dir`, `data.squad_dir`, `model.path`,
    `model.hub_id`, `model.tokenizer`): the same files at another path are the same run.
* `inputs` — what the declared config points at, fingerprinted when a run starts: the data
  files the task reads (SHA-256 of each) or the Hub dataset's name, and the model's files (a
  content fingerprint of its directory) or its Hub id, or "built from config".
* `code` — revision numbers of the training loop and of the method's arithmetic
  (`CODE_REVISION` here, `Method.revision`): bumped by hand when a change alters what a run
  computes, so results of older code are not reused as if they were current.

The run folder is `<output_root>/<model>/<task>/<method>/<label>-<hash>`: a readable label of the
method's main settings, learning rate and seed, and the first 8 hex digits of the SHA-256 of
`declared`. The same declared configuration always lands in the same folder and a different one
never does (up to a hash collision). `inputs` and `code` are stored in `result.json` and
checkpoints and compared before anything is reused (`dcft.experiment`): changed data files,
other weights or a newer code revision in an existing folder are refused with the keys that
differ, never silently reused.

Written in-house because no library defines "the configuration that determines a run" for this
harness: Hydra names folders from command-line overrides (which is what made one configuration
land in three folders and three configurations in one).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

# Config keys that never change what a run computes (dotted paths into the resolved config).
NEUTRAL_KEYS = (
    "output_root", "logger", "hydra",
    "train.overwrite", "train.progress", "train.checkpoint_steps", "train.device", "train.log_steps",
    "train.eval_batch_size",
)
# Keys naming where inputs live: replaced by the inputs' fingerprints (`inputs`).
LOCATION_KEYS = ("data.glue_dir", "data.squad_dir", "model.path", "model.hub_id", "model.tokenizer")
# Top-level keys that are inputs to the method node through interpolation (`${kernel}` ...).
METHOD_INPUT_KEYS = ("kernel", "stride", "targets", "dcft_hp")
# Train keys added after runs existed, dropped while at the value that reproduces the older loop
# (so the runs made before them keep their identity): `group_by_length: false` = plain shuffling.
DEFAULT_DROPPED_TRAIN_KEYS = ("group_by_length",)
SQUAD_ONLY_TASK_KEYS = ("doc_stride", "n_best", "max_answer_length", "null_threshold")
# Bumped by hand when the training loop's arithmetic changes (what a run computes, not how fast).
CODE_REVISION = 1
HASH_LEN = 8

# Method settings shown in a run folder's readable label, per method, in this order (every other
# setting is in the hash only); a method not listed shows `targets` when it has one.
LABEL_KEYS = {"dcft": ("kernel", "stride", "targets"), "lora": ("r", "targets"), "lorafa": ("r", "targets"),
              "sora": ("r", "targets"), "adalora": ("init_r", "target_r", "targets"),
              "hadapter": ("bottleneck",), "padapter": ("bottleneck",)}


def _pop(d: dict, dotted: str) -> None:
    node = d
    *parents, last = dotted.split(".")
    for k in parents:
        node = node.get(k) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(last, None)


def declared_config(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The declared part of the effective configuration, from a resolved config (a plain dict,
    e.g. `OmegaConf.to_container(cfg, resolve=True)` or `result.json`'s `config`)."""
    cfg = json.loads(json.dumps(dict(resolved), default=str))  # a deep, plain copy
    for key in NEUTRAL_KEYS + LOCATION_KEYS + METHOD_INPUT_KEYS:
        _pop(cfg, key)
    method = cfg.get("method") or {}
    if "kernel" in method and method.get("stride") is None:
        method["stride"] = method["kernel"]
    train = cfg.get("train") or {}
    if (train.get("max_steps") or -1) > 0:
        train.pop("epochs", None)
    if (train.get("warmup_steps") or 0) > 0:
        train.pop("warmup_ratio", None)
    for key in DEFAULT_DROPPED_TRAIN_KEYS:  # added after runs existed: at the old behaviour, not part of identity
        if train.get(key) is False:
            train.pop(key)
    task = cfg.get("task") or {}
    if task.get("kind", "glue") != "squad":
        for k in SQUAD_ONLY_TASK_KEYS:
            task.pop(k, None)
    return cfg


def canonical(obj: Any) -> str:
    """The JSON text hashed for identity: sorted keys, no whitespace, floats as Python prints them."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(declared: Mapping[str, Any]) -> str:
    """The short hash of a declared configuration (the suffix of its run folder)."""
    return hashlib.sha256(canonical(declared).encode()).hexdigest()[:HASH_LEN]


NAMED_TARGETS = ("all", "qk", "qv", "qkv", "qkvo")  # dcft.models.TARGET_SETS; lists and regexes show as "custom"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(_fmt(x) for x in v)
    return str(v).replace("/", "_").replace(",", "+")


def run_label(declared: Mapping[str, Any]) -> str:
    """A readable folder label: the method's main settings, the learning rate and the seed."""
    method = declared.get("method") or {}
    keys = LABEL_KEYS.get(str(method.get("name")), ("targets",))
    parts = [f"{k}={_fmt(method[k]) if k != 'targets' or method[k] in NAMED_TARGETS else 'custom'}"
             for k in keys if method.get(k) is not None]
    lr = (declared.get("train") or {}).get("lr")
    if lr is not None:
        parts.append(f"lr={_fmt(lr)}")
    parts.append(f"seed={declared.get('seed')}")
    return ",".join(parts)


def run_name(declared: Mapping[str, Any]) -> str:
    """`<label>-<hash>`: the last level of a run folder."""
    return f"{run_label(declared)}-{config_hash(declared)}"


def run_subdir(declared: Mapping[str, Any]) -> str:
    """`<model>/<task>/<method>/<label>-<hash>`, relative to `output_root`."""
    return "/".join([str((declared.get("model") or {}).get("name")), str((declared.get("task") or {}).get("name")),
                     str((declared.get("method") or {}).get("name")), run_name(declared)])


def resolve_run_subdir(*, _root_: Any) -> str:
    """OmegaConf resolver `${run_subdir:}` used by `hydra.run.dir` / `hydra.sweep.subdir`: the run
    folder of the composed config it is resolved in (the `hydra` node is not read)."""
    from omegaconf import OmegaConf

    plain = {k: OmegaConf.to_container(_root_[k], resolve=True) if OmegaConf.is_config(_root_[k]) else _root_[k]
             for k in _root_ if k != "hydra"}
    return run_subdir(declared_config(plain))


def unused_method_inputs(cfg: Any, overridden: Iterable[str]) -> list[str]:
    """Top-level method inputs (`kernel`, `stride`, `targets`, `dcft_hp.*`) set on the command line
    (`overridden`: override keys such as "kernel") that the chosen method's node never reads."""
    from omegaconf import OmegaConf

    raw = canonical(OmegaConf.to_container(cfg.method, resolve=False))
    out = []
    for key in overridden:
        key = key.lstrip("+~")
        root = key.split(".")[0]
        if root in METHOD_INPUT_KEYS and "${" + key not in raw and "${" + root + "}" not in raw:
            out.append(key)
    return out


# ------------------------------------------------------------------------------------------------
# Fingerprints of what a run reads
# ------------------------------------------------------------------------------------------------
_SAMPLED_ABOVE = 64 * 2**20  # files larger than this are fingerprinted from samples (weights)
_SAMPLES, _SAMPLE_BYTES = 64, 64 * 1024
_cache: dict[tuple[str, int, int, bool], str] = {}


def file_sha256(path: str | Path, sampled: bool = False) -> str:
    """SHA-256 of a file's content. `sampled` (used for model weights, which are large): files
    over 64 MiB are hashed from their size and 64 evenly spaced 64 KiB blocks — enough to tell
    two checkpoints apart, seconds faster than reading gigabytes. Cached per (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, sampled)
    if key in _cache:
        return _cache[key]
    h = hashlib.sha256()
    with p.open("rb") as f:
        if sampled and st.st_size > _SAMPLED_ABOVE:
            h.update(f"sampled:{st.st_size}:".encode())
            step = (st.st_size - _SAMPLE_BYTES) // (_SAMPLES - 1)
            for i in range(_SAMPLES):
                f.seek(i * step)
                h.update(f.read(_SAMPLE_BYTES))
        else:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
    _cache[key] = ("sampled-" if sampled and st.st_size > _SAMPLED_ABOVE else "") + h.hexdigest()[:16]
    return _cache[key]


def model_fingerprint(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What the weights are: built from config (its numbers are in `declared`), a local directory
    (a fingerprint of every file in it: weights, config and tokenizer), or a Hub id (+ revision)."""
    from dcft.models import resolve_path

    source = model_cfg.get("source", "pretrained")
    if source == "config":
        return {"source": "config"}
    path = resolve_path(model_cfg.get("path"))
    if path:
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"model.path={model_cfg.get('path')!r} is not a directory")
        files = {p.name: file_sha256(p, sampled=True) for p in sorted(root.iterdir())
                 if p.is_file() and not p.name.startswith(".")}
        return {"source": "local", "files": files}
    return {"source": "hub", "hub_id": model_cfg.get("hub_id")}


def data_fingerprint(task: Any) -> dict[str, Any]:
    """What the data are: the SHA-256 of every file the task reads (`Task.data_files()`), or the
    Hub dataset it loads. Raises (naming the file) when a file the task needs is missing."""
    files = task.data_files()
    if not files:
        return {"source": "hub", "dataset": task.hub_dataset()}
    out = {}
    for split, path in files.items():
        p = Path(path)
        if not p.is_file():
            from dcft.data.glue import DataError

            raise DataError(f"{task.name}: the {split} file {p} does not exist "
                            f"(the data folder must hold {', '.join(Path(f).name for f in files.values())})")
        out[split] = {"file": p.name, "sha256": file_sha256(p)}
    return {"source": "files", "files": out}


# ------------------------------------------------------------------------------------------------
# The whole effective configuration and its comparison
# ------------------------------------------------------------------------------------------------


def effective_config(resolved: Mapping[str, Any], task: Any, method_revision: int) -> dict[str, Any]:
    """`{"declared", "hash", "inputs", "code"}` of a run about to start (reads data and model files)."""
    declared = declared_config(resolved)
    return {
        "declared": declared,
        "hash": config_hash(declared),
        "inputs": {"data": data_fingerprint(task), "model": model_fingerprint(resolved.get("model") or {})},
        "code": {"loop": CODE_REVISION, "method": method_revision},
    }


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (an empty dict stays a leaf)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): obj}


ABSENT = "(absent)"


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], skip: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """`(dotted key, old value, new value)` for every leaf where two nested configs differ, sorted by
    key; keys in `skip` are ignored and a missing leaf reads as "(absent)"."""
    a = {k: v for k, v in flatten(dict(old)).items() if k not in skip}
    b = {k: v for k, v in flatten(dict(new)).items() if k not in skip}
    return [(k, a.get(k, ABSENT), b.get(k, ABSENT)) for k in sorted(set(a) | set(b))
            if a.get(k, ABSENT) != b.get(k, ABSENT)]


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 12) -> list[str]:
    """Human-readable `key: old -> new` lines where two effective configurations differ
    (`hash` is skipped: it follows from `declared`)."""
    lines = [f"{k.replace('declared.', '', 1)}: {a!r} -> {b!r}" for k, a, b in changed_keys(old, new, skip={"hash"})]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


def env_rank() -> int:
    """The global process rank under `accelerate launch` / torchrun (0 when single-process)."""
    return int(os.environ.get("RANK", "0") or 0)
