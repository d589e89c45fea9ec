"""Experiment tracking through Accelerate's trackers (`Accelerator(log_with=...)`), chosen by the
`logger=` config group (`conf/logger/`): TensorBoard (default where installed), Weights & Biases,
Aim, MLflow or none.

What is tracked: at the start, the resolved config flattened to `section.key` hyperparameters and
the parameter counts (`params/method`, `params/head`, `params/total`, `params/trainable`); while
training (dcft/harness/train.py, `accelerator.log`), `train/loss`, `train/task_loss`, `train/reg_loss`,
`train/lr`, `train/epoch` every `train.log_steps` optimizer steps and `eval/score`,
`eval/best_score`, `eval/<metric>` at every evaluation (scores x100, `dcft.units`), all at the
optimizer step; at the end, the final metrics (`final_metrics`: best and final scores, best step,
training minutes), in TensorBoard as the run's HParams session, so runs sort by score there.
`log.jsonl` and `result.json` are written regardless.

    kw = accelerator_kwargs(cfg.logger, run_dir)        # {} or {log_with, project_config}
    accelerator = Accelerator(..., **kw)
    hp = start(accelerator, cfg.logger, record, run_name)  # init_trackers with config and counts
    finish(accelerator, hp, final_metrics(record))         # final metrics, then close (event files complete)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "aim": "aim", "mlflow": "mlflow"}  # name -> pip package
CHOICES = ("auto", "none", *TRACKERS)


def available(name: str) -> bool:
    """Whether Accelerate can use tracker `name` here (its package is importable)."""
    from accelerate.utils import imports

    return bool(getattr(imports, f"is_{name}_available")())


def resolve(name: str) -> str | None:
    """The tracker a `logger.name` stands for: None for none (or auto without TensorBoard)."""
    if name not in CHOICES:
        raise ValueError(f"logger.name={name!r}; valid: {', '.join(CHOICES)} (or logger=<one of them>)")
    if name == "none":
        return None
    if name == "auto":
        return "tensorboard" if available("tensorboard") else None
    if not available(name):
        raise ValueError(f"logger={name} needs the {TRACKERS[name]} package: pip install {TRACKERS[name]} "
                         f"(or logger=none)")
    return name


def tracking_dir(lcfg, run_dir: str | Path) -> Path:
    """Where local trackers write: `logger.dir`, else `<run folder>/tracking`."""
    return Path(lcfg.dir) if lcfg.dir else Path(run_dir) / "tracking"


def accelerator_kwargs(lcfg, run_dir: str | Path | None) -> dict[str, Any]:
    """`Accelerator` keyword arguments for the chosen tracker: `log_with` and a project
    configuration whose logging folder is `tracking_dir`; {} for no tracker."""
    name = resolve(lcfg.name)
    if name is None or run_dir is None:
        return {}
    from accelerate.utils import ProjectConfiguration

    return {"log_with": name, "project_config": ProjectConfiguration(project_dir=str(run_dir),
                                                                     logging_dir=str(tracking_dir(lcfg, run_dir)))}


def flat_hparams(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as flat `a.b.c` keys with values every tracker takes (numbers, strings,
    booleans; lists and None as text)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_hparams(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = "null" if v is None else str(v)
    return out


def start(accelerator, lcfg, record: Mapping[str, Any], run_name: str) -> dict[str, Any]:
    """`init_trackers` with the resolved config and parameter counts as hyperparameters (no-op
    without a tracker); the counts are also logged as scalars at step 0. Returns the hyperparameters
    (for `finish`). TensorBoard gets them at the end instead, with the run's final metrics, so that
    its HParams tab can sort runs by score (one session per run: Accelerate's own
    `store_init_configuration` would write a second one without metrics)."""
    if not accelerator.log_with:
        return {}
    hparams = flat_hparams(record.get("config") or {})
    counts = {f"params/{k}": v for k, v in (record.get("params") or {}).items() if isinstance(v, (int, float))}
    hparams.update(counts)
    init_kwargs = {str(k): dict(v) for k, v in (lcfg.init_kwargs or {}).items()}
    name = str(accelerator.log_with[0])
    defaults = {"wandb": {"name": run_name, "dir": str(tracking_dir(lcfg, record.get("run_dir", ".")))},
                "mlflow": {"run_name": run_name, "logging_dir": str(lcfg.dir) if lcfg.dir else None}}
    if name in defaults:
        init_kwargs[name] = {**{k: v for k, v in defaults[name].items() if v is not None}, **init_kwargs.get(name, {})}
    accelerator.init_trackers(lcfg.project, config=None if name == "tensorboard" else hparams, init_kwargs=init_kwargs)
    if counts:
        accelerator.log(counts, step=0)
    return hparams


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """A finished run's headline numbers for a tracker, scores x100 as everywhere a person reads them
    (`dcft.units`): `best/<set>/<metric>` (at the best step), `final/<set>/<metric>` (at the end),
    `best/step`, `train/minutes` (training loop), and `status/completed` (1 or 0)."""
    from dcft.units import is_score_key, score_scale

    cfg = record.get("config") or {}
    scale = score_scale((cfg.get("task") or {}).get("name"))
    metrics = record.get("metrics") or {}
    out: dict[str, float] = {"status/completed": float(record.get("status") == "completed")}
    for part in ("best", "final"):
        for k, v in (metrics.get(part) or {}).items():
            if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                out[f"{part}/{k}"] = float(v) * (scale if is_score_key(k) else 1.0)
    best_step = (metrics.get("best") or {}).get("step")
    if isinstance(best_step, int):
        out["best/step"] = float(best_step)
    train_s = (record.get("train") or {}).get("train_time_s")
    if isinstance(train_s, (int, float)):
        out["train/minutes"] = float(train_s) / 60
    return out


def finish(accelerator, hparams: Mapping[str, Any] | None = None, final: Mapping[str, float] | None = None) -> None:
    """Log the run's `final` metrics (`final_metrics`): TensorBoard as an HParams session of
    `hparams` with those metrics (`SummaryWriter.add_hparams`, in the run's own event folder), the
    other trackers as scalars at the last step. Then close every tracker (flushes TensorBoard's event
    file). Not `end_training`, which would also destroy the process group that a multirun inside one
    `accelerate launch` still needs."""
    if accelerator is None:
        return
    for tracker in getattr(accelerator, "trackers", []):
        if final:
            if tracker.name == "tensorboard":
                tracker.writer.add_hparams(dict(hparams or {}), dict(final), run_name=".")
            else:
                tracker.log(dict(final))
        tracker.finish()
    accelerator.trackers = []


def run_name(run_dir: str | Path) -> str:
    """A run's name in a tracker: `<model>/<task>/<method>/<settings>`, the last four levels of its folder."""
    return "/".join(Path(run_dir).parts[-4:])
