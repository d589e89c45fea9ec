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

from dcft import results
from dcft.methods import build_method
from dcft.models import build_model, get_model, load_tokenizer
from dcft.tasks import build_task


def make_accelerator(tcfg):
    """The Accelerator of a run (device, precision, accumulation, seedable sampler)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    if tcfg.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"train.device={tcfg.device!r}; valid: auto, cpu, cuda")
    if tcfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    if tcfg.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"train.mixed_precision={tcfg.mixed_precision!r}; valid: no, fp16, bf16")
    if tcfg.nan_policy not in ("fail", "skip"):
        raise ValueError(f"train.nan_policy={tcfg.nan_policy!r}; valid: fail, skip")
    on_cpu = tcfg.device == "cpu" or (tcfg.device == "auto" and not torch.cuda.is_available())
    accelerator = Accelerator(cpu=on_cpu, mixed_precision=tcfg.mixed_precision,
                              gradient_accumulation_steps=tcfg.grad_accum,
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    leave_process_group_at_exit()
    return accelerator


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
    """Validate method, task and the method-on-architecture fit without loading anything."""
    method = build_method(cfg.method)
    task = build_task(cfg.task, cfg.data)
    if cfg.model.arch:
        meta = build_model(cfg.model, head=task.head, num_labels=task.num_labels, device="meta")
        method.validate(meta, method.targets)
    return method, task


def run(cfg: DictConfig, run_dir: str | Path, choices: dict[str, Any] | None = None) -> dict:
    """Run one configuration and write `<run_dir>/result.json`; returns the result record.

    Raises after writing a `failed` result, so a single run exits non-zero.
    """
    run_dir = Path(run_dir)
    existing = results.read_result(run_dir)
    if existing and existing.get("status") == "completed" and not cfg.train.overwrite:
        print(f"[dcft] {run_dir} is already completed (set train.overwrite=true to re-run):")
        print(summary_text(existing))
        return existing

    record: dict[str, Any] = {
        "schema_version": results.SCHEMA_VERSION,
        "status": "running",
        "run_dir": str(run_dir),
        "choices": dict(choices or {}),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    accelerator = None
    t0 = time.perf_counter()
    try:
        method, task = precheck(cfg)
        accelerator = make_accelerator(cfg.train)
        main = accelerator.is_main_process
        record.update(device=str(accelerator.device), precision=cfg.train.mixed_precision,
                      processes=accelerator.num_processes, environment=results.environment())
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

        tokenizer = load_tokenizer(cfg.model)
        with accelerator.main_process_first():
            data = task.load(tokenizer, cfg.train.max_len, limit=cfg.data.limit_train, seed=cfg.seed,
                             limit_eval=cfg.data.limit_eval)
        record["data"] = {"train_examples": len(data.train), "eval_examples": {k: len(v) for k, v in data.evals.items()}}

        from dcft.checkpoint import Checkpointer
        from dcft.train import fit, peak_memory

        if cfg.train.overwrite and main:  # a fresh run: no resume, and a log of this run only
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            (run_dir / "log.jsonl").unlink(missing_ok=True)
        accelerator.wait_for_everyone()  # no rank looks for a checkpoint before they are gone
        checkpointer = None
        if cfg.train.checkpoint_steps > 0:
            checkpointer = Checkpointer(run_dir, method, record["config"], is_main=main)
        state = fit(model, method, task, data, cfg.train, accelerator, run_dir if main else None,
                    checkpointer=checkpointer, seed=cfg.seed)
        final = state.history[-1]
        record.update(
            status="completed",
            metrics={
                "best": {"score": state.best_score, "step": state.best_step, **state.best_metrics},
                "final": final,
                "history": state.history,
            },
            train={"steps": state.step, "epochs": state.epoch, "final_loss": state.last_loss,
                   "skipped_steps": state.skipped_steps,
                   "train_time_s": state.train_time_s, "eval_time_s": state.eval_time_s,
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
        if accelerator is None or accelerator.is_main_process:
            results.atomic_write_json(run_dir / results.RESULT_FILE, record)
    if accelerator.is_main_process:
        print(summary_text(record))
    return record


def summary_text(rec: dict) -> str:
    """A readable end-of-run summary of a result record."""
    cfg, m = rec.get("config", {}), rec.get("metrics", {})
    best, final = m.get("best", {}), m.get("final", {})
    p, t = rec.get("params", {}), rec.get("train", {})
    method = cfg.get("method", {}) or {}
    setting = f"kernel={method['kernel']} stride={method.get('stride') or method['kernel']} " \
        if "kernel" in method else ""
    lines = [
        f"== {cfg.get('model', {}).get('name')} / {cfg.get('task', {}).get('name')} / {method.get('name')} "
        f"{setting}targets={method.get('targets', '-')} seed={cfg.get('seed')}: {rec.get('status')}",
        f"   params: method {p.get('method', 0):,}  head {p.get('head', 0):,}  total {p.get('total', 0):,}",
    ]
    if best:
        keys = [k for k in best if "/" in k]
        lines.append(f"   best (step {best.get('step')}): " + "  ".join(f"{k}={best[k]:.4f}" for k in keys))
        lines.append(f"   final (step {final.get('step')}): " +
                     "  ".join(f"{k}={final[k]:.4f}" for k in keys if isinstance(final.get(k), float)))
        lines.append(f"   time: train {t.get('train_time_s', 0):.1f}s  eval {t.get('eval_time_s', 0):.1f}s  "
                     f"{t.get('steps_per_s') or 0:.2f} steps/s  ({t.get('steps')} steps)")
    if rec.get("error"):
        lines.append(f"   error: {rec['error']['type']}: {rec['error']['message']}")
    lines.append(f"   result: {rec.get('run_dir')}/{results.RESULT_FILE}")
    return "\n".join(lines)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
