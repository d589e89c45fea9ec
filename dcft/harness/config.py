"""Typed Hydra schemas: every key of a run, with its type, so a typo or a wrong type is
rejected by Hydra with a clear message before anything runs.

The YAML files under `conf/` extend these dataclasses (defaults `- /schemas/<group>@_here_`, methods
`- /schemas/method/<name>@_here_`: a group of their own, so a schema is never offered as a choice), and carry
the one-line comment per key; the dataclasses carry the types. `register()` stores them in
Hydra's ConfigStore and is called by `run.py` before `@hydra.main`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import OmegaConf


@dataclass
class ModelConf:
    name: str = "???"
    hub_id: Optional[str] = None
    path: Optional[str] = None
    tokenizer: Optional[str] = None
    source: str = "pretrained"
    family: str = "???"
    arch: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskConf:
    name: str = "???"
    kind: str = "glue"
    # SQuAD only (ignored by GLUE tasks)
    doc_stride: int = 128
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float = 0.0


@dataclass
class DataConf:
    glue_dir: Optional[str] = None
    squad_dir: Optional[str] = None
    limit_train: Optional[int] = None
    limit_eval: Optional[int] = None
    holdout: float = 0.0
    pad_to_max_length: bool = False


@dataclass
class TrainConf:
    lr: float = 5e-4
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum: int = 1
    epochs: float = 3.0
    max_steps: int = -1
    max_len: int = 128
    group_by_length: bool = False
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    cls_dropout: Optional[float] = None
    eval_steps: int = 100
    log_steps: int = 10
    mixed_precision: str = "no"
    device: str = "auto"
    nan_policy: str = "fail"
    overwrite: bool = False
    checkpoint_steps: int = 0
    progress: bool = True
    reuse_across_versions: bool = False


@dataclass
class LaunchConf:  # set from how the process was launched (resolvers `world_size`, `device_kind`)
    processes: int = 1
    device: str = "cpu"


@dataclass
class LoggerConf:  # conf/logger/ (dcft.harness.tracking)
    name: str = "auto"
    project: str = "dcft"
    dir: Optional[str] = None
    init_kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class DCFTHp:
    alpha: float = 32.0
    r: float = 2.0
    reg_orth_coef: float = 0.1


@dataclass
class RunConf:
    model: ModelConf = field(default_factory=ModelConf)
    task: TaskConf = field(default_factory=TaskConf)
    method: Any = None
    data: DataConf = field(default_factory=DataConf)
    train: TrainConf = field(default_factory=TrainConf)
    dcft_hp: DCFTHp = field(default_factory=DCFTHp)
    logger: LoggerConf = field(default_factory=LoggerConf)
    launch: LaunchConf = field(default_factory=LaunchConf)
    kernel: int = 2
    stride: Optional[int] = None
    targets: Any = "all"  # target set name, list of module-name suffixes, or regex (dcft.harness.models.check_targets)
    seed: int = 6
    output_root: str = "results/runs"


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def load_group_file(group: str, name: str) -> dict[str, Any]:
    """A `conf/<group>/<name>.yaml` file as a plain dict (without its `defaults` list), e.g. a
    model's architecture for building it on the meta device outside Hydra."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ValueError(f"{group}={name!r} does not exist; valid: {', '.join(valid)}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    data.pop("defaults", None)
    return data


def _fields(cls) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)]


def unknown_key_hint(args: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """For a command-line `key=value` whose key the config does not have (no `+`/`~` prefix), one line
    naming it with the closest known keys ("did you mean"), before Hydra composes anything (Hydra's
    own message would suggest appending it with `+`). None when every key is known."""
    import difflib

    from dcft.methods import REGISTRY, config_class

    groups = {p.name for p in conf_dir.iterdir() if p.is_dir()}
    top = set(_fields(RunConf)) | groups | {"hydra"}
    nested = {"train": TrainConf, "data": DataConf, "task": TaskConf, "model": ModelConf, "dcft_hp": DCFTHp,
              "logger": LoggerConf, "launch": LaunchConf}
    method = next((a.split("=", 1)[1] for a in args if a.startswith("method=")), "dcft")
    if method in REGISTRY:
        nested["method"] = config_class(method)
    for arg in args:
        if arg.startswith(("+", "~", "-")) or "=" not in arg:
            continue
        key = arg.split("=", 1)[0]
        if "/" in key or "@" in key:  # a group choice (hydra/launcher=slurm, hp@_global_=...): Hydra checks it
            continue
        parts = key.split(".")
        if parts[0] == "hydra":
            continue
        if parts[0] not in top:
            known, name = sorted(top - {"hydra"}), parts[0]
        elif len(parts) > 1 and parts[0] in nested and parts[1] not in _fields(nested[parts[0]]):
            known, name = _fields(nested[parts[0]]), parts[1]
        else:
            continue
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        where = f"{parts[0]}." if name != parts[0] else ""
        return (f"unknown key {key!r} in {arg!r}"
                + (f"; did you mean {' or '.join(where + c for c in close)}?" if close else "")
                + f" Known keys{' of ' + parts[0] if where else ''}: {', '.join(known)}."
                + " (To add a new key on purpose, prefix it with +.)")
    return None


# Method keys that mean something else in another method: method -> {key: why it is refused, what to use}.
MISREAD_METHOD_KEYS = {
    "dcft": {"r": "DCFT has no rank r (LoRA's rank is method.r, DCFT's is not): its subspace rank is method.rank "
                  "(paper k, default 1) and its size is set by kernel= and stride=; the r of the authors' scripts "
                  "is only the denominator of DCFT's scaling alpha / r, set with dcft_hp.r= (the presets set it)"},
}


def check_method_node(cfg) -> None:
    """Refuse a method key set directly when its name means something else for this method
    (`MISREAD_METHOD_KEYS`): the key of `conf/method/<name>.yaml` is an interpolation that the composed
    config no longer carries, so a command line, a sweep file or a preset changed it. A config stored
    resolved (a result file's) carries the interpolation's value instead, and passes."""
    name = str(cfg.method.name)
    misread = MISREAD_METHOD_KEYS.get(name, {})
    if not misread:
        return
    declared = load_group_file("method", name)
    raw = OmegaConf.to_container(cfg.method, resolve=False)
    for key, why in misread.items():
        if key not in raw or raw[key] == declared.get(key):
            continue
        meant = OmegaConf.create({**OmegaConf.to_container(cfg, resolve=False), "_meant": declared.get(key)})
        if raw[key] != OmegaConf.select(meant, "_meant"):
            value = OmegaConf.select(cfg, f"method.{key}")
            raise ValueError(f"method.{key}={value!r} is refused for method={name}: {why}")


def model_preset(model: str, conf_dir: Path = CONF_DIR) -> str | None:
    """The preset a model's config selects (`- override /preset@...: <name>` in `conf/model/<model>.yaml`
    defaults), or None; a `preset=` on the command line wins over it."""
    path = conf_dir / "model" / f"{model}.yaml"
    if not path.is_file():
        return None
    for item in OmegaConf.load(path).get("defaults") or []:
        if isinstance(item, str) or not hasattr(item, "items"):
            continue
        for k, v in item.items():
            if str(k).startswith("override /preset"):
                return str(v)
    return None


def register() -> None:
    """Store the schemas in Hydra's ConfigStore and register the resolvers of `dcft.harness.identity`:
    `run_subdir` (the run folder of a composed config), `world_size` and `device_kind` (`launch.*`), and
    `dcft_help` (`python run.py --help`, `dcft.harness.cli_help`)."""
    from hydra.core.config_store import ConfigStore

    from dcft.methods import REGISTRY, config_class

    cs = ConfigStore.instance()
    cs.store(name="schema", node=RunConf)
    cs.store(group="schemas", name="model", node=ModelConf)
    cs.store(group="schemas", name="task", node=TaskConf)
    cs.store(group="schemas", name="logger", node=LoggerConf)
    for name in REGISTRY:
        cs.store(group="schemas/method", name=name, node=config_class(name))
    from dcft.harness.identity import device_kind, resolve_run_subdir, world_size

    for name, resolver in (("run_subdir", resolve_run_subdir), ("world_size", world_size), ("device_kind", device_kind)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
    if not OmegaConf.has_resolver("dcft_help"):  # `python run.py --help` (hydra.help.template)
        from dcft.harness.cli_help import help_text

        OmegaConf.register_new_resolver("dcft_help", help_text)
