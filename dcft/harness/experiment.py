"""One run from a composed config: check, build, train, and write its `result.json`.

Order of work (cheap checks first, so bad input fails before expensive work):
1. method and task configs are validated (names, values);
2. the method is checked against the model's architecture built on the meta device (a kernel or
   stride the model cannot take fails here, before weights or data are loaded);
3. model (weights) and method; 4. data; 5. training; 6. the result file.

A failed run still writes its result file, with `status: failed` and the reason.
"""

from __future__ import annotations

import atexit
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dcft import conditions
from dcft.report import results
from dcft.harness import tracking
from dcft.harness.config import check_method_node, model_preset
from dcft.harness.console import RunConsole
from dcft.methods import build_method
from dcft.harness.models import build_model, check_model_dir, get_model, load_tokenizer
from dcft.tasks import build_task
from dcft.harness.train import check_precision, reset_precision_state, runs_on_cpu


def make_accelerator(tcfg, **tracker_kwargs):
    """The Accelerator of a run (device, precision, accumulation, seedable sampler); `tracker_kwargs`
    (`log_with`, `project_config`) from `dcft.harness.tracking.accelerator_kwargs`."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    check_train(tcfg)
    reset_precision_state(tcfg.mixed_precision)
    accelerator = Accelerator(cpu=runs_on_cpu(tcfg.device), mixed_precision=tcfg.mixed_precision,
                              gradient_accumulation_steps=tcfg.grad_accum,
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
                              **tracker_kwargs)
    leave_process_group_at_exit()
    return accelerator


POSITIVE_TRAIN_KEYS = ("batch_size", "eval_batch_size", "grad_accum", "max_len")
CHOICES = {"device": ("auto", "cpu", "cuda"), "mixed_precision": ("no", "fp16", "bf16"), "nan_policy": ("fail", "skip")}


def check_train(tcfg) -> None:
    """The `train.*` settings that can be checked without any work (a clear error naming key, value
    and what is valid), including whether a requested GPU exists."""
    for key in POSITIVE_TRAIN_KEYS:
        value = getattr(tcfg, key, 1)
        if value < 1:
            raise ValueError(f"train.{key}={value}; it must be a positive integer")
    for key, valid in CHOICES.items():
        value = getattr(tcfg, key, valid[0])
        if value not in valid:
            raise ValueError(f"train.{key}={value!r}; valid: {', '.join(valid)}")
    if tcfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    check_precision(tcfg.mixed_precision, runs_on_cpu(tcfg.device))
    if getattr(tcfg, "lr", 1.0) <= 0:
        raise ValueError(f"train.lr={tcfg.lr}; it must be positive")


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def leave_process_group_at_exit() -> None:
    """Destroy the process group while the interpreter is still alive, once, at exit.

    A process that exits with a gloo group alive can abort in interpreter finalization
    ("terminate called without an active exception", SIGABRT) when gloo's worker threads are torn
    down after Python; seen once in CI on a 2-process CPU run. Registering at exit (not after each
    run) keeps the group usable for every job of a Hydra multirun inside one `accelerate launch`.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        atexit.unregister(_destroy_process_group)  # registered at most once
        atexit.register(_destroy_process_group)


def precheck(cfg: DictConfig):
    """Validate training settings, method, task, the model directory and the method-on-architecture
    fit without loading any weights or data."""
    check_train(cfg.train)
    if "logger" in cfg:
        tracking.resolve(cfg.logger.name)  # a tracker that is not installed fails here, before any folder
    if cfg.model.get("source", "pretrained") == "pretrained":
        check_model_dir(cfg.model)
    check_method_node(cfg)
    method = build_method(cfg.method)
    task = build_task(cfg.task, cfg.data)
    if cfg.model.arch:
        meta = build_model(cfg.model, head=task.head, num_labels=task.num_labels, device="meta")
        method.validate(meta, method.targets)
    return method, task


def run(cfg: DictConfig, run_dir: str | Path, choices: dict[str, Any] | None = None,
        overridden: list[str] | tuple[str, ...] = ()) -> dict:
    """Run one configuration and write `<run_dir>/result.json`; returns the result record, with
    `outcome` "trained" or "reused" (not stored in the file).

    Before anything is written: the config is validated (method, task, the method on the model's
    meta-device architecture, the preset and baseline settings files, then the data source: no local
    files while the Hub is offline is one line naming the data key, `Task.check_source`), the effective configuration is fingerprinted
    (`dcft.harness.identity`: the data files and weights are read here, so a missing file fails now) and the
    folder is locked (`dcft.harness.reuse.RunLock`). A completed result is returned unchanged only when its
    effective configuration is this one; a different one is refused (`dcft.harness.reuse.RunRefused`), a
    rejected launch leaves no folder behind. A run that fails after it started writes a `failed`
    result and re-raises, so a single run exits non-zero. `overridden`: the command line's override
    keys, to name method inputs (kernel, stride, ...) the chosen method does not read.
    """
    from dcft.harness import identity, reuse

    run_dir = Path(run_dir)
    try:
        method, task = precheck(cfg)
        sources = reuse.hp_sources(choices)  # config files (preset, baseline settings) before any data probe
        if (results.read_result(run_dir) or {}).get("status") != "completed":  # a finished run is reused or refused
            task.check_source()  # no local data while the Hub is offline: one line now, not a download attempt later
        resolved = OmegaConf.to_container(cfg, resolve=True)
        ident = identity.effective_config(resolved, task, method.revision)
    except BaseException:
        if not reuse.remove_unstarted(run_dir, root=cfg.get("output_root")):
            reuse.drop_launch(run_dir)
        raise
    say_model_preset(cfg, choices, overridden)
    unused = identity.unused_method_inputs(cfg, overridden)
    if unused:
        print(f"[dcft] method={cfg.method.name} does not use {', '.join(unused)}: ignored (this run is the same "
              f"run as without {'it' if len(unused) == 1 else 'them'})")
    main_rank = identity.env_rank() == 0
    run_dir = unlimited_run_dir(cfg, run_dir, resolved, ident, task, move=main_rank)
    try:
        with reuse.RunLock(run_dir, enabled=main_rank):
            existing = results.read_result(run_dir)
            across = bool(cfg.train.get("reuse_across_versions", False))
            decision = reuse.decide(existing, ident, bool(cfg.train.overwrite), run_dir, across_versions=across)
            if main_rank:  # Hydra's record of this launch: the run's own if it trains, else dropped
                (reuse.drop_launch if decision == "reuse" else reuse.keep_launch)(run_dir)
            if decision == "reuse":
                releases = reuse.other_releases(existing, ident)
                print(f"[dcft] {run_dir} is already completed with this configuration (reused; "
                      f"train.overwrite=true re-runs it)"
                      + (f", made with other library releases (train.reuse_across_versions=true): "
                         f"{'; '.join(releases)}" if releases else "") + ":")
                print(summary_text(existing))
                return {**existing, "outcome": "reused"}
            with RunConsole(run_dir if main_rank else None, progress=cfg.train.progress):  # quiet; run.log
                return _train(cfg, run_dir, choices, method, task, resolved, ident, sources)
    except reuse.RunRefused:
        if main_rank:
            reuse.drop_launch(run_dir)
        raise


def unlimited_run_dir(cfg: DictConfig, run_dir: Path, resolved: dict[str, Any], ident: dict[str, Any], task,
                      move: bool = True) -> Path:
    """The folder of the run `ident` describes when a `data.limit_train` at or above the task's
    training examples made it the run without a limit (`dcft.harness.identity.effective_config`), and
    `run_dir` is the folder Hydra named from the limit: Hydra's record of the launch moves there
    (`move`: the main process). Any other `run_dir` (chosen by hand) is kept."""
    from dcft.harness import identity, reuse

    named = identity.declared_config(resolved)
    if ident["declared"] == named or run_dir.name != identity.run_name(named):
        return run_dir
    new_dir = run_dir.parent / identity.run_name(ident["declared"])
    print(f"[dcft] data.limit_train={cfg.data.limit_train} is at least the {task.train_pool_size()} training "
          f"examples of task={task.name}: no limit, so this is the run without it ({new_dir})")
    if move:
        reuse.move_launch(run_dir, new_dir, root=cfg.get("output_root"))
    return new_dir


def check_launch(launch, accelerator) -> None:
    """`launch.processes` and `launch.device` (resolved when the config was composed, part of the
    run's identity and folder) against what the Accelerator has: a clear error when they differ."""
    if launch is None:
        return
    if accelerator.num_processes != launch.processes:
        raise ValueError(f"launch.processes={launch.processes} but this launch trains on {accelerator.num_processes} "
                         f"process(es); launch.* is filled in from the launch (WORLD_SIZE of accelerate launch / "
                         f"torchrun), never set by hand")
    if accelerator.device.type != launch.device:
        raise ValueError(f"launch.device={launch.device!r} but the Accelerator trains on {accelerator.device.type!r}; "
                         f"launch.device is filled in from train.device and this machine, never set by hand")


def say_model_preset(cfg: DictConfig, choices: dict[str, Any] | None, overridden) -> None:
    """Say so when the model's config chose the preset (`dcft.harness.config.model_preset`), not the command line."""
    preset = (choices or {}).get("preset")
    if preset and "preset" not in [k.lstrip("+~") for k in overridden] and model_preset(cfg.model.name) == preset:
        print(f"[dcft] model={cfg.model.name} runs preset={preset} (conf/model/{cfg.model.name}.yaml; "
              f"preset=... chooses another)")


def _train(cfg: DictConfig, run_dir: Path, choices: dict[str, Any] | None, method, task,
           resolved: dict[str, Any], ident: dict[str, Any], sources: dict[str, str | None]) -> dict:
    """Train a validated, locked run and write its result file (see `run`)."""
    from dcft.harness import identity

    record: dict[str, Any] = {
        "schema_version": results.SCHEMA_VERSION,
        "status": "running",
        "run_dir": str(run_dir),
        "choices": dict(choices or {}),
        "hp_sources": sources,
        "identity": ident,
        "config": resolved,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    accelerator = None
    hparams: dict[str, Any] = {}
    t0 = time.perf_counter()
    at_start = conditions.snapshot()
    record["machine"] = conditions.machine_record(at_start)
    try:
        accelerator = make_accelerator(cfg.train, **tracking.accelerator_kwargs(cfg.logger, run_dir))
        main = accelerator.is_main_process
        record.update(device=str(accelerator.device), accelerator=identity.accelerator_name(accelerator.device),
                      precision=cfg.train.mixed_precision, processes=accelerator.num_processes,
                      environment=results.environment())
        check_launch(cfg.get("launch"), accelerator)
        if main:
            results.atomic_write_json(run_dir / results.RESULT_FILE, record)

        from accelerate.utils import set_seed

        set_seed(cfg.seed)
        model = get_model(cfg.model, head=task.head, num_labels=task.num_labels,
                          cls_dropout=cfg.train.cls_dropout, seed=cfg.seed)
        method.apply(model)
        counts = method.count(model)
        record["params"] = {"method": counts.method, "head": counts.head, "total": counts.total,
                            "trainable": counts.trainable}
        hparams = tracking.start(accelerator, cfg.logger, record, tracking.run_name(run_dir))

        tokenizer = load_tokenizer(cfg.model)
        with accelerator.main_process_first():
            data = task.load(tokenizer, cfg.train.max_len, limit=cfg.data.limit_train, seed=cfg.seed,
                             limit_eval=cfg.data.limit_eval)
        record["data"] = {"train_examples": len(data.train), "eval_examples": {k: len(v) for k, v in data.evals.items()}}
        chance = task.baseline(data)
        if chance:
            record["baseline"] = {"rule": task.baseline_rule, **chance}

        from dcft.harness.checkpoint import Checkpointer
        from dcft.harness.train import fit, peak_memory

        if cfg.train.overwrite and main:  # a fresh run: no resume, and a log of this run only
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            (run_dir / "log.jsonl").unlink(missing_ok=True)
        accelerator.wait_for_everyone()  # no rank looks for a checkpoint before they are gone
        checkpointer = None
        if cfg.train.checkpoint_steps > 0:
            checkpointer = Checkpointer(run_dir, method, ident, is_main=main)
        from dcft.harness.export import RunAdapters

        adapters = RunAdapters(method, run_dir, enabled=main,  # best and final adapter, peft format
                               describe=adapter_description(cfg, task, ident))

        def on_best(unwrapped) -> None:
            adapters.save_best(unwrapped)
            keep_best_predictions(run_dir)

        state = fit(model, method, task, data, cfg.train, accelerator, run_dir if main else None,
                    checkpointer=checkpointer, seed=cfg.seed, on_best=on_best)
        adapters.save_final(accelerator.unwrap_model(model))
        record["adapter"] = adapters.info()
        live = method.rank_report(accelerator.unwrap_model(model))  # SoRA / AdaLoRA: ranks left after training
        if live:
            record["params"]["after_training"] = live
        final = state.history[-1]
        record.update(
            status="completed",
            metrics={
                "best": {"score": state.best_score, "step": state.best_step, **state.best_metrics},
                "final": final,
                "history": state.history,
            },
            train={"steps": state.step, "epochs": state.epoch, "final_loss": state.last_loss,
                   "final_task_loss": state.last_task_loss,
                   "skipped_steps": state.skipped_steps,
                   "train_time_s": state.train_time_s, "eval_time_s": state.eval_time_s,
                   # the authors' train_runtime (HF Trainer) includes evaluation: Tables 4, 5, Figure 2
                   "train_with_eval_time_s": state.train_time_s + state.eval_time_s,
                   "steps_per_s": state.step / state.train_time_s if state.train_time_s > 0 else None},
            memory=peak_memory(accelerator.device),
        )
    except BaseException as e:  # noqa: BLE001 - record every failure, then re-raise
        record.update(status="failed", error={"type": type(e).__name__, "message": str(e),
                                              "step": getattr(e, "step", None),
                                              "traceback": traceback.format_exc(limit=8)})
        raise
    finally:
        record["wall_time_s"] = time.perf_counter() - t0
        record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        record["machine"] = conditions.machine_record(at_start, conditions.snapshot(),
                                                      accelerator.num_processes if accelerator is not None else 1)
        if accelerator is None or accelerator.is_main_process:
            results.atomic_write_json(run_dir / results.RESULT_FILE, record)
        tracking.finish(accelerator, hparams, tracking.final_metrics(record))
        if accelerator is None or accelerator.is_main_process:
            results.share_files(run_dir)  # files libraries wrote 0600 (safetensors) become readable as open()'s
    if accelerator.is_main_process:
        print(summary_text(record))
    return {**record, "outcome": "trained"}


def adapter_description(cfg: DictConfig, task, ident: dict[str, Any]) -> dict[str, Any]:
    """What a saved adapter says about itself (`dcft.harness.export.RunAdapters`): the backbone it belongs to
    (the local folder the run loaded, else its Hub id), the peft task type, the label names of a
    classification task, and the run (identity hash, task, score key)."""
    from dcft.harness.models import resolve_path

    base = None
    if cfg.model.get("source", "pretrained") == "pretrained":
        base = resolve_path(cfg.model.get("path")) or cfg.model.get("hub_id")
    labels = list(getattr(getattr(task, "spec", None), "label_names", ()) or ())
    return {"base_model_name_or_path": str(base) if base else None,
            "task_type": "QUESTION_ANS" if task.head == "qa" else "SEQ_CLS",
            "id2label": {i: name for i, name in enumerate(labels)} or None,
            "run": {"hash": ident["hash"], "model": cfg.model.name, "task": task.name, "method": cfg.method.name,
                    "best_picked_by": task.score_key()}}


def keep_best_predictions(run_dir: Path) -> None:
    """Copy the predictions the task just wrote (`predictions/*.tsv`, the evaluation that is the new
    best) to `predictions/best/`."""
    src = Path(run_dir) / "predictions"
    if not src.is_dir():
        return
    best = src / "best"
    best.mkdir(exist_ok=True)
    for f in src.glob("*.tsv"):
        shutil.copyfile(f, best / f.name)


def summary_text(rec: dict) -> str:
    """A readable end-of-run summary of a result record (`dcft.report.results.summary`)."""
    return results.summary(rec)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
