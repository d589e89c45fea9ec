"""Run identity: a run *is* its effective configuration.

The effective configuration is everything that determines a run's outcome, and nothing else:

* `declared` — the composed, resolved config with what cannot change the outcome taken out and
  what a method does not read normalised away:
  - the method's own node only (`method.*`, resolved): the top-level `kernel`, `stride`,
    `targets` and `dcft_hp` keys are inputs to it, so a LoRA run with `kernel=8` is the LoRA run
    without it; a DCFT `stride: null` is written as the kernel it means; a target list or regex
    that selects exactly the modules of a named set (`all`, `qkvo`, ...) on the model's
    architecture is written as that name;
  - `train.epochs` is dropped when `train.max_steps > 0` (it is ignored), `train.warmup_ratio`
    when `train.warmup_steps > 0`; `train.max_grad_norm <= 0` (no clipping, whatever the number)
    is written as 0.0; SQuAD-only task keys are dropped for GLUE tasks;
  - `model.arch` of pretrained weights: only its dropout keys apply (`dcft.harness.models.
    apply_arch_to_pretrained`), so every other key is written as the model's `conf/model` file has
    it (the checkpoint's own `config.json` is fingerprinted in `inputs`);
  - keys added after runs existed, left out while at the value every earlier run used
    (`OMITTED_AT`): `train.group_by_length: false`, `launch.processes: 1`, `launch.device: cpu`;
  - `launch` is how the process was started: the number of processes (the global batch is
    `batch_size x processes x grad_accum`) and the device kind (cpu, cuda, mps), resolved when the
    config is composed (`world_size`, `device_kind`) and checked against the Accelerator at start;
  - keys that change where files go or how the run looks, never what it computes
    (`NEUTRAL_KEYS`: output folder, overwrite, progress bars, checkpoint interval, the device
    *choice* (its kind is `launch.device`), logging intervals, evaluation batch size, experiment
    tracker, `train.reuse_across_versions`);
  - *where* data and weights live (`data.glue_dir`, `data.squad_dir`, `model.path`,
    `model.hub_id`, `model.tokenizer`): the same files at another path are the same run.
  A `data.limit_train` at or above the number of training examples limits nothing: once the task
  can count its examples (local GLUE files) the run is the one without it (`effective_config`).
* `inputs` — what the declared config points at, fingerprinted when a run starts: the data
  files the task reads (SHA-256 of each) or the Hub dataset's name and revision, the model's files
  (its config, weights and tokenizer files: `FINGERPRINTED_FILES`; a README is documentation) or its
  Hub id and revision, or "built from config"; and the tokenizer's files (or Hub id and revision)
  when `model.tokenizer` names another one. A Hub revision is the commit of the local Hub cache's
  snapshot, where the cache has one; revisions are compared only where both runs know theirs.
* `code` — revision numbers of the training loop and of the method's arithmetic
  (`CODE_REVISION` here, `Method.revision`): bumped by hand when a change alters what a run
  computes, so results of older code are not reused as if they were current. `tests/
  test_revisions.py` guards them: it fails when the code a revision covers changes while the
  revision does not (`dcft.harness.revisions`).
* `versions` — major.minor of torch, transformers, peft and accelerate (`VERSIONED`). A completed
  run of other releases is refused, naming them, unless `train.reuse_across_versions=true`; a
  patch release (5.24.0 -> 5.24.3) is the same release. `SAME_RESULTS` lists minor releases
  checked to compute bit-identical runs of this harness (accelerate 1.15 and 1.16).

The run folder is `<output_root>/<model>/<task>/<method>/<label>-<hash>`: a readable label of the
method's main settings, learning rate and seed, and the first 8 hex digits of the SHA-256 of
`declared`. The same declared configuration always lands in the same folder and a different one
never does (up to a hash collision). `inputs`, `code` and `versions` are stored in `result.json`
and checkpoints and compared before anything is reused (`compare`, used by `dcft.harness.reuse.decide`):
changed data files, other weights, a newer code revision or other library releases in an existing
folder are refused with the keys that differ, never silently reused. `of_record` gives the
identity of any stored result (older files included) in the form `compare` uses.

Written in-house because no library defines "the configuration that determines a run" for this
harness: Hydra names folders from command-line overrides (which is what made one configuration
land in three folders and three configurations in one).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

# Config keys that never change what a run computes (dotted paths into the resolved config).
NEUTRAL_KEYS = (
    "output_root", "logger", "hydra",
    "train.overwrite", "train.progress", "train.checkpoint_steps", "train.device", "train.log_steps",
    "train.eval_batch_size", "train.reuse_across_versions",
)
# Keys naming where inputs live: replaced by the inputs' fingerprints (`inputs`).
LOCATION_KEYS = ("data.glue_dir", "data.squad_dir", "model.path", "model.hub_id", "model.tokenizer")
# Top-level keys that are inputs to the method node through interpolation (`${kernel}` ...).
METHOD_INPUT_KEYS = ("kernel", "stride", "targets", "dcft_hp")
# Keys added after runs existed, left out of `declared` while at the value every earlier run used, so
# those runs keep their identity: plain shuffling, one process, the CPU.
OMITTED_AT: dict[str, Any] = {"train.group_by_length": False, "launch.processes": 1, "launch.device": "cpu"}
# What a run did before a key existed (`scripts/migrate_runs.py` assumes it for a result file without the
# key, and refuses a result that lacks any other key today's config has): no held-out slice (selection
# on dev), batches padded per batch, plain shuffling. `launch.*` come from the result's own record.
BEFORE_KEY_EXISTED: dict[str, Any] = {"data.holdout": 0.0, "data.pad_to_max_length": False,
                                      "train.group_by_length": False}
SQUAD_ONLY_TASK_KEYS = ("doc_stride", "n_best", "max_answer_length", "null_threshold")
# Bumped by hand when the training loop's arithmetic changes (what a run computes, not how fast);
# `dcft.harness.revisions` lists the code it covers and `tests/test_revisions.py` guards it.
CODE_REVISION = 1
HASH_LEN = 8

# Method settings shown in a run folder's readable label, per method, in this order (every other
# setting is in the hash only); a method not listed shows `targets` when it has one.
LABEL_KEYS = {"dcft": ("kernel", "stride", "targets"), "lora": ("r", "targets"), "lorafa": ("r", "targets"),
              "sora": ("r", "targets"), "adalora": ("init_r", "target_r", "targets"),
              "hadapter": ("bottleneck",), "padapter": ("bottleneck",)}


def _get(d: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = d
    for k in dotted.split("."):
        if not isinstance(node, Mapping) or k not in node:
            return default
        node = node[k]
    return node


def _pop(d: dict, dotted: str) -> None:
    node = d
    *parents, last = dotted.split(".")
    for k in parents:
        node = node.get(k) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(last, None)


def _same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type (`1 == True` and `0 == False` must not drop a key)."""
    return type(a) is type(b) and a == b


@functools.lru_cache(maxsize=None)
def _model_file_arch(name: str) -> str | None:
    """`model.arch` of `conf/model/<name>.yaml` as JSON (in the file's order), or None without such a file."""
    from dcft.harness.config import CONF_DIR, load_group_file

    if not (CONF_DIR / "model" / f"{name}.yaml").is_file():
        return None
    data = load_group_file("model", name)
    return json.dumps(data.get("arch") or {}) if data.get("name") == name else None


def _pretrained_arch(model: dict) -> None:
    """`model.arch` of pretrained weights, in place: dropout keys as given (they apply to the
    weights), every other key as the model's conf file has it (the checkpoint's own config wins)."""
    if model.get("source", "pretrained") != "pretrained" or not isinstance(model.get("arch"), dict):
        return
    from_file = _model_file_arch(str(model.get("name")))
    if from_file is None:
        return
    arch = {k: v for k, v in json.loads(from_file).items() if "dropout" not in k}
    arch.update({k: v for k, v in model["arch"].items() if "dropout" in k})
    model["arch"] = arch


@functools.lru_cache(maxsize=64)
def _named_target_set(model_json: str, targets_json: str) -> str | None:
    """The named target set selecting exactly the modules a target list / regex selects in the
    model built on the meta device from its config, or None (no model, or no such set)."""
    from dcft.harness.models import TARGET_SETS, build_model, resolve_targets

    model_cfg, targets = json.loads(model_json), json.loads(targets_json)
    try:
        meta = build_model(model_cfg, device="meta")
        chosen = set(resolve_targets(meta, targets))
    except Exception:  # noqa: BLE001 - a spec that does not resolve is reported by the run's own checks
        return None
    for name in TARGET_SETS:
        try:
            if set(resolve_targets(meta, name)) == chosen:
                return name
        except ValueError:  # a set this family cannot take (fused roles)
            continue
    return None


def _named_targets(cfg: dict) -> None:
    """A method's target list or regex written as the named set it equals (in place)."""
    method, model = cfg.get("method") or {}, cfg.get("model") or {}
    targets = method.get("targets")
    if targets is None or (isinstance(targets, str) and targets in NAMED_TARGETS) or not model.get("family"):
        return
    name = _named_target_set(canonical({k: model.get(k) for k in ("family", "arch")}), canonical(targets))
    if name is not None:
        method["targets"] = name


def declared_config(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The declared part of the effective configuration, from a resolved config (a plain dict,
    e.g. `OmegaConf.to_container(cfg, resolve=True)` or `result.json`'s `config`)."""
    cfg = json.loads(json.dumps(dict(resolved), default=str))  # a deep, plain copy
    for key in NEUTRAL_KEYS + LOCATION_KEYS + METHOD_INPUT_KEYS:
        _pop(cfg, key)
    method = cfg.get("method") or {}
    if "kernel" in method and method.get("stride") is None:
        method["stride"] = method["kernel"]
    _named_targets(cfg)
    train = cfg.get("train") or {}
    if (train.get("max_steps") or -1) > 0:
        train.pop("epochs", None)
    if (train.get("warmup_steps") or 0) > 0:
        train.pop("warmup_ratio", None)
    if isinstance(train.get("max_grad_norm"), (int, float)) and train["max_grad_norm"] <= 0:
        train["max_grad_norm"] = 0.0  # 0 and -1 both mean no clipping (dcft.harness.train.fit)
    for key, value in OMITTED_AT.items():  # added after runs existed: at the old behaviour, not part of identity
        if _same_value(_get(cfg, key, None), value):
            _pop(cfg, key)
    if cfg.get("launch") == {}:
        cfg.pop("launch")
    task = cfg.get("task") or {}
    if task.get("kind", "glue") != "squad":
        for k in SQUAD_ONLY_TASK_KEYS:
            task.pop(k, None)
    if isinstance(cfg.get("model"), dict):
        _pretrained_arch(cfg["model"])
    return cfg


NAMED_TARGETS = ("all", "qk", "qv", "qkv", "qkvo")  # dcft.harness.models.TARGET_SETS; lists and regexes show as "custom"


def canonical(obj: Any) -> str:
    """The JSON text hashed for identity: sorted keys, no whitespace, floats as Python prints them."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(declared: Mapping[str, Any]) -> str:
    """The short hash of a declared configuration (the suffix of its run folder)."""
    return hashlib.sha256(canonical(declared).encode()).hexdigest()[:HASH_LEN]


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


# What `from_pretrained` reads from a model or tokenizer folder: config and tokenizer files (*.json, the
# vocabularies), weights, remote code. Anything else (README.md, LICENSE, images) documents the folder.
FINGERPRINTED_FILES = ("*.json", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack",
                       "*.model", "*.tiktoken", "vocab.txt", "merges.txt", "*.py")


def fingerprinted(name: str) -> bool:
    """Whether a model folder's file is part of what its weights are (`FINGERPRINTED_FILES`)."""
    return not name.startswith(".") and any(fnmatch.fnmatch(name, pat) for pat in FINGERPRINTED_FILES)


def folder_fingerprint(path: str | Path, key: str) -> dict[str, Any]:
    """`{"source": "local", "files": {name: fingerprint}}` of a model or tokenizer folder's config,
    weights and tokenizer files; `key` names the config key in the error for a missing folder."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{key}={str(path)!r} is not a directory")
    return {"source": "local", "files": {p.name: file_sha256(p, sampled=True) for p in sorted(root.iterdir())
                                         if p.is_file() and fingerprinted(p.name)}}


def hub_revision(repo_id: str | None, repo_type: str = "model") -> str | None:
    """The commit of the local Hub cache's `main` snapshot of a repository (what `from_pretrained` /
    `load_dataset` load offline), or None where the cache has none (not downloaded yet)."""
    if not repo_id:
        return None
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    ref = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "refs" / "main"
    if not ref.is_file():
        return None
    return ref.read_text(encoding="utf-8").strip() or None


def model_fingerprint(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What the weights are: built from config (its numbers are in `declared`), a local directory
    (its config, weights and tokenizer files), or a Hub id and the revision the Hub cache holds."""
    from dcft.harness.models import resolve_path

    if model_cfg.get("source", "pretrained") == "config":
        return {"source": "config"}
    path = resolve_path(model_cfg.get("path"))
    if path:
        return folder_fingerprint(path, "model.path")
    return {"source": "hub", "hub_id": model_cfg.get("hub_id"), "revision": hub_revision(model_cfg.get("hub_id"))}


def tokenizer_fingerprint(model_cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the tokenizer is when `model.tokenizer` names one: the built-in byte-level tokenizer
    (`bytes`, code of `dcft.harness.models`), a local folder's tokenizer files, or a Hub id and revision.
    None when it is the model's own (the model's fingerprint covers its tokenizer files)."""
    from dcft.harness.models import resolve_path

    spec = model_cfg.get("tokenizer")
    if not spec:
        return None
    if spec == "bytes":
        return {"source": "bytes"}
    path = resolve_path(str(spec))
    if Path(path).expanduser().is_dir():
        return folder_fingerprint(Path(path).expanduser(), "model.tokenizer")
    return {"source": "hub", "hub_id": spec, "revision": hub_revision(str(spec))}


def data_fingerprint(task: Any) -> dict[str, Any]:
    """What the data are: the SHA-256 of every file the task reads (`Task.data_files()`), or the
    Hub dataset it loads and the revision the Hub cache holds. Raises (naming the file) when a file
    the task needs is missing."""
    files = task.data_files()
    if not files:
        dataset = task.hub_dataset()
        return {"source": "hub", "dataset": dataset,
                "revision": hub_revision("/".join(str(dataset).split("/")[:2]), "dataset")}
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
# How the process was launched, and the libraries it runs on
# ------------------------------------------------------------------------------------------------
VERSIONED = ("torch", "transformers", "peft", "accelerate")  # their major.minor is part of a run's identity
# Minor releases checked to compute bit-identical runs of this harness on one CPU process (the only
# launch they apply to): each maps to the release it equals, so results of one are reused under the
# other. accelerate 1.15 = 1.16: MiniLM, SST-2, DCFT kernel 8 with the CPU study's settings (held-out
# slice, length-grouped batches), 40 steps: every logged loss, every evaluation and the saved adapters
# byte for byte the same under 1.15.0 and 1.16.0 (the CPU study ran 22 of its runs on 1.15).
SAME_RESULTS: dict[str, dict[str, str]] = {"accelerate": {"1.15": "1.16"}}


def world_size() -> int:
    """OmegaConf resolver `${world_size:}` (`launch.processes`): the processes of this launch,
    `WORLD_SIZE` as `accelerate launch` and torchrun set it, else 1."""
    return int(os.environ.get("WORLD_SIZE", "") or 1)


def device_kind(choice: str = "auto") -> str:
    """OmegaConf resolver `${device_kind:${train.device}}` (`launch.device`): the kind of device the
    Accelerator will train on for `train.device` (auto: cuda if present, else Apple's mps, else cpu;
    `ACCELERATE_USE_CPU` forces the CPU)."""
    if choice == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return "cpu"
    if choice == "cuda":
        return "cuda"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def accelerator_name(device: Any) -> str | None:
    """The name of the device a run trained on (the GPU's model, else the CPU's), for time columns:
    times compare only between runs on the same accelerator."""
    import platform

    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    if kind == "mps":
        return f"Apple {platform.machine()} (mps)"
    from dcft.report.results import cpu_model

    return cpu_model()


def major_minor(version: str | None) -> str | None:
    """`"2.13.0+cpu"` -> `"2.13"`: the release a version belongs to (patch releases are the same)."""
    m = re.match(r"\s*(\d+)\.(\d+)", version or "")
    return f"{m.group(1)}.{m.group(2)}" if m else version


def versions_of(full: Mapping[str, Any] | None) -> dict[str, str | None]:
    """The `versions` part of an identity from full version strings (`results.library_versions()`)."""
    return {pkg: major_minor((full or {}).get(pkg)) for pkg in VERSIONED}


def library_versions() -> dict[str, str | None]:
    """major.minor of the installed `VERSIONED` libraries."""
    from dcft.report.results import library_versions as installed

    return versions_of(installed())


# ------------------------------------------------------------------------------------------------
# The whole effective configuration and its comparison
# ------------------------------------------------------------------------------------------------


def effective_config(resolved: Mapping[str, Any], task: Any, method_revision: int) -> dict[str, Any]:
    """`{"declared", "hash", "inputs", "code", "versions"}` of a run about to start (reads data and
    model files). A `data.limit_train` at or above the training examples the task counts
    (`Task.train_pool_size`) is written as no limit: the run is the one without it."""
    declared = declared_config(resolved)
    model_cfg = resolved.get("model") or {}
    inputs = {"data": data_fingerprint(task), "model": model_fingerprint(model_cfg)}
    limit = (declared.get("data") or {}).get("limit_train")
    if limit is not None:
        pool = task.train_pool_size()
        if pool is not None and limit >= pool:
            declared["data"]["limit_train"] = None
    tokenizer = tokenizer_fingerprint(model_cfg)
    if tokenizer is not None:
        inputs["tokenizer"] = tokenizer
    return {
        "declared": declared,
        "hash": config_hash(declared),
        "inputs": inputs,
        "code": {"loop": CODE_REVISION, "method": method_revision},
        "versions": library_versions(),
    }


def comparable(ident: Mapping[str, Any]) -> dict[str, Any]:
    """An identity in the form `compare` reads: without its hash (it follows from `declared`),
    model and tokenizer folders reduced to today's `FINGERPRINTED_FILES` (an older result also
    fingerprinted the README), releases mapped through `SAME_RESULTS` (for one CPU process: a
    declared config without `launch`)."""
    out = json.loads(json.dumps({k: v for k, v in dict(ident).items() if k != "hash"}, default=str))
    for part in ("model", "tokenizer"):
        node = (out.get("inputs") or {}).get(part)
        if isinstance(node, dict) and isinstance(node.get("files"), dict):
            node["files"] = {k: v for k, v in node["files"].items() if fingerprinted(k)}
    if isinstance(out.get("versions"), dict) and not (out.get("declared") or {}).get("launch"):
        out["versions"] = {pkg: SAME_RESULTS.get(pkg, {}).get(v, v) for pkg, v in out["versions"].items()}
    return out


def of_record(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of a stored result in `comparable` form: its stored `identity` (declared,
    inputs, code), `versions` from the result's recorded environment where the identity predates
    them; for a result written before identities existed, the declared configuration computed from
    its stored config (its inputs and code are then unknown)."""
    stored = dict(rec.get("identity") or {})
    if "declared" not in stored:
        stored["declared"] = declared_config(rec.get("config") or {})
    if "versions" not in stored and _get(rec, "environment.versions") is not None:
        stored["versions"] = versions_of(_get(rec, "environment.versions"))
    return comparable(stored)


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """`(dotted key, old, new)` where two identities differ (`comparable` form, e.g. `of_record(rec)`
    and `comparable(effective_config(...))`); a Hub revision counts only where both know it."""
    return [(k, a, b) for k, a, b in changed_keys(old, new, skip={"hash"})
            if not (k.endswith(".revision") and (a in (None, ABSENT) or b in (None, ABSENT)))]


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


def describe(diff: Iterable[tuple[str, Any, Any]], limit: int = 12) -> list[str]:
    """Readable `key: old -> new` lines of `compare`'s output (at most `limit`)."""
    lines = [f"{k.replace('declared.', '', 1)}: {a!r} -> {b!r}" for k, a, b in diff]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 12) -> list[str]:
    """Readable `key: old -> new` lines where two effective configurations differ."""
    return describe(compare(comparable(old), comparable(new)), limit)


def env_rank() -> int:
    """The global process rank under `accelerate launch` / torchrun (0 when single-process)."""
    return int(os.environ.get("RANK", "0") or 0)
