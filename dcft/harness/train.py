"""The training loop, on Accelerate: one code path for CPU, one GPU and many.

AdamW (or the method's own optimizer), linear warm-up then linear decay, weight decay with the
usual exemptions, gradient clipping and accumulation, optional mixed precision, evaluation every
N optimizer steps and at the end, the best dev score tracked (the paper reports the best,
Table 1 caption), a progress bar (or, with bars off, a heartbeat line every few seconds) and a
JSONL log. The loop knows no method or task by name:
it asks the `Method` for parameters, optimizer, extra loss and per-step hook, and the `Task`
for data, model outputs and metrics.

Scheduler rule with several processes: the scheduler is not prepared by Accelerate and steps
exactly once per optimizer step; the step count is that of each process (its data shard), so
warm-up and decay are counted in optimizer steps of the global batch
(`batch_size x processes x grad_accum`).

Mixed precision (`train.mixed_precision`) is Accelerate's autocast around the model's forward
pass: bf16 on the CPU and on a GPU, fp16 (with loss scaling) on a GPU only. Weights, optimizer
state and the method's extra loss (computed outside the forward pass) stay float32.
"""

from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dcft.methods.base import Method
from dcft.units import is_score_key, progress_text, score_scale
from dcft.tasks.base import Task, TaskData


def runs_on_cpu(device: str) -> bool:
    """Whether `train.device` puts the run on the CPU (`auto`: when no CUDA device is visible)."""
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def check_precision(mixed_precision: str, on_cpu: bool) -> None:
    """A clear error, before any work, for a precision the device cannot run.

    fp16 autocast needs CUDA (and loss scaling, Accelerate's GradScaler); Accelerate on the CPU would
    not refuse it but silently train in float32 while the run records fp16. bf16 autocast runs on
    both (on the CPU: `torch.autocast("cpu", torch.bfloat16)` around the forward pass)."""
    if mixed_precision == "fp16" and on_cpu:
        raise ValueError("train.mixed_precision=fp16 needs a CUDA device (fp16 autocast with loss scaling); on the "
                         "CPU use train.mixed_precision=bf16 (bfloat16 autocast) or no (float32)")


def reset_precision_state(mixed_precision: str) -> None:
    """Let this process's next `Accelerator` take `mixed_precision`.

    Accelerate keeps one precision per process (its shared `AcceleratorState`) and refuses an
    Accelerator with another one. A process that runs several jobs one after the other (a Hydra
    multirun, `-m train.mixed_precision=no,bf16`) drops that state when the precision changes;
    the device and process-group state (`PartialState`) is kept, so a launched group stays usable."""
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, value: float):
        super().__init__(f"non-finite training loss ({value}) at optimizer step {step}; lower train.lr, "
                         f"use train.mixed_precision=no, or set train.nan_policy=skip to drop such steps")
        self.step = step


@dataclass
class TrainState:
    """Everything a resumed run needs besides model and optimizer state."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch in progress
    batches_in_epoch: int = 0  # micro-batches consumed in the current epoch
    best_score: float = -math.inf
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    skipped_steps: int = 0  # steps dropped by nan_policy=skip
    last_loss: float | None = None  # objective of the last logged window: task loss + regulariser
    last_task_loss: float | None = None  # the task's own loss (cross-entropy / MSE / span CE) of that window


class JsonlLog:
    """Append-only JSON-lines log (main process only; `None` path = no log)."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **record: Any) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def total_steps(steps_per_epoch: int, epochs: float, max_steps: int) -> int:
    """Optimizer steps of the run: `max_steps` if positive, else `ceil(epochs x steps_per_epoch)`."""
    return max_steps if max_steps > 0 else max(1, math.ceil(epochs * steps_per_epoch))


def warmup_steps(total: int, steps: int, ratio: float) -> int:
    """Warm-up length in optimizer steps: `steps` when positive, else `ceil(ratio x total)`."""
    return steps if steps > 0 else math.ceil(ratio * total)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory of the run: CUDA allocator peak on a GPU, process peak RSS on the CPU."""
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated(device))}
    return {"kind": "cpu_peak_rss", "bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024}


def _concat(chunks: list[np.ndarray]) -> np.ndarray:
    """Concatenate gathered batches; ragged second axes are padded with -1e4 (never the argmax)."""
    if chunks[0].ndim >= 2 and len({c.shape[1] for c in chunks}) > 1:
        width = max(c.shape[1] for c in chunks)
        chunks = [np.pad(c, [(0, 0), (0, width - c.shape[1])] + [(0, 0)] * (c.ndim - 2), constant_values=-1e4)
                  for c in chunks]
    return np.concatenate(chunks, axis=0)


def evaluate(model, task: Task, data: TaskData, loaders: dict[str, DataLoader], accelerator,
             out_dir: Path | None) -> dict[str, float]:
    """Metrics of every evaluation set, gathered over processes without duplicated examples."""
    model.eval()
    metrics: dict[str, float] = {}
    for name, loader in loaders.items():
        parts: dict[str, list[np.ndarray]] = {}
        for batch in loader:
            inputs = task.model_inputs(batch)
            labels = inputs.pop("labels", None)
            with torch.no_grad():
                outputs = task.outputs(model(**inputs))
            if labels is not None:
                outputs["labels"] = labels
            if "idx" in batch:  # the examples' ids travel with their outputs (e.g. a GLUE predictions file)
                outputs["idx"] = batch["idx"]
            outputs = {k: accelerator.pad_across_processes(v, dim=1, pad_index=-10000) if v.ndim >= 2 else v
                       for k, v in outputs.items()}
            outputs = accelerator.gather_for_metrics(outputs)
            for k, v in outputs.items():
                parts.setdefault(k, []).append(v.detach().float().cpu().numpy() if v.is_floating_point()
                                               else v.detach().cpu().numpy())
        gathered = {k: _concat(v) for k, v in parts.items()}
        metrics.update(task.compute_metrics(name, gathered, data, out_dir if accelerator.is_main_process else None))
    model.train()
    return metrics


def make_loaders(data: TaskData, batch_size: int, eval_batch_size: int,
                 seed: int = 0, group_by_length: bool = False,
                 eval_by_length: bool = False) -> tuple[DataLoader, dict[str, DataLoader]]:
    """Shuffled training loader (seeded per epoch by Accelerate) and sequential eval loaders.
    The loader has its own generator so iterating it never draws from the global RNG (which
    dropout uses): a resumed run then sees the same random stream as an uninterrupted one.

    `group_by_length` draws each batch from examples of similar length (transformers'
    `LengthGroupedSampler`, HF Trainer's `group_by_length`: a seeded shuffle, then length-sorted
    mega-batches of 50 batches), so batches carry less padding; every example is still seen once
    per epoch. `eval_by_length` evaluates in order of length (less padding; only for tasks whose
    metrics ignore the example order, `Task.eval_order_free`)."""
    generator = torch.Generator().manual_seed(seed)
    if group_by_length:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        lengths = [len(ids) for ids in data.train["input_ids"]]
        sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=generator)
        train = DataLoader(data.train, batch_size=batch_size, sampler=sampler, collate_fn=data.collate)
    else:
        train = DataLoader(data.train, batch_size=batch_size, shuffle=True, collate_fn=data.collate,
                           generator=generator)
    def eval_loader(ds) -> DataLoader:
        if not eval_by_length:
            return DataLoader(ds, batch_size=eval_batch_size, shuffle=False, collate_fn=data.collate)
        lengths = [len(ids) for ids in ds["input_ids"]]
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        return DataLoader(ds, batch_size=eval_batch_size, sampler=order, collate_fn=data.collate)

    return train, {n: eval_loader(ds) for n, ds in data.evals.items()}


def fit(model, method: Method, task: Task, data: TaskData, tcfg, accelerator, run_dir: Path | None = None,
        state: TrainState | None = None, checkpointer=None, seed: int = 0, on_best=None) -> TrainState:
    """Train `model` with `method` on `task`; returns the final `TrainState` (best, history, times).

    `tcfg` is the `train` config (`dcft.harness.config.TrainConf`). `run_dir` (main process) receives
    `log.jsonl` and task predictions. `checkpointer(state, model, optimizer, scheduler)`, if given,
    is called every `tcfg.checkpoint_steps` optimizer steps and at the end. `on_best(model)`, if
    given, is called on the main process at each new best evaluation (e.g. to save that adapter).
    """
    from transformers import get_linear_schedule_with_warmup

    main = accelerator.is_main_process
    log = JsonlLog(run_dir / "log.jsonl" if (run_dir is not None and main) else None)
    train_loader, eval_loaders = make_loaders(
        data, tcfg.batch_size, tcfg.eval_batch_size, seed, tcfg.group_by_length,
        eval_by_length=tcfg.group_by_length and task.eval_order_free)

    optimizer = method.optimizer(model, tcfg.lr, tcfg.weight_decay, (tcfg.adam_beta1, tcfg.adam_beta2),
                                 tcfg.adam_eps)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    eval_loaders = {n: accelerator.prepare(dl) for n, dl in eval_loaders.items()}
    unwrapped = accelerator.unwrap_model(model)

    steps_per_epoch = max(1, math.ceil(len(train_loader) / tcfg.grad_accum))
    n_steps = total_steps(steps_per_epoch, tcfg.epochs, tcfg.max_steps)
    n_epochs = math.ceil(n_steps / steps_per_epoch)
    n_warmup = warmup_steps(n_steps, tcfg.warmup_steps, tcfg.warmup_ratio)
    scheduler = get_linear_schedule_with_warmup(optimizer, n_warmup, n_steps)
    method.prepare_training(unwrapped, n_steps)
    trainable = [p for _, p in method.trainable_parameters(unwrapped)]

    state = state or TrainState()
    if checkpointer is not None:
        state = checkpointer.restore(state, unwrapped, optimizer, scheduler) or state
    log.write(type="start", total_steps=n_steps, steps_per_epoch=steps_per_epoch, epochs=n_epochs,
              warmup_steps=n_warmup, processes=accelerator.num_processes, resumed_at=state.step)

    progress = heartbeat = None
    if tcfg.progress and main:
        from tqdm.auto import tqdm

        progress = tqdm(total=n_steps, initial=state.step, desc=f"{task.name}/{method.name}", unit="step",
                        dynamic_ncols=True)
    elif main:  # bars off: a line every few seconds instead
        from dcft.harness.console import Heartbeat

        heartbeat = Heartbeat(n_steps, first_step=state.step, label=f"{task.name}/{method.name}")
    scale = score_scale(task.name)  # what a person reads: x100 (GLUE), SQuAD as is (dcft.units)

    def run_eval() -> None:
        t0 = time.perf_counter()
        metrics = evaluate(model, task, data, eval_loaders, accelerator, run_dir)
        state.eval_time_s += time.perf_counter() - t0
        score = task.score(metrics)
        better = score == score and score > state.best_score  # NaN is never better
        if better:
            state.best_score, state.best_step, state.best_metrics = score, state.step, dict(metrics)
            if on_best is not None and main:
                on_best(unwrapped)
        state.history.append({"step": state.step, "epoch": state.epoch, "score": score, **metrics})
        log.write(type="eval", step=state.step, score=score, best=better, **metrics)
        accelerator.log({"eval/score": score * scale, "eval/best_score": state.best_score * scale,
                         **{f"eval/{k}": v * (scale if is_score_key(k) else 1.0)
                            for k, v in metrics.items() if isinstance(v, (int, float))}},
                        step=state.step)
        shown = progress_text(task.name, task.score_key(), score, state.best_score, state.best_step)
        if progress is not None:
            progress.set_postfix_str(shown)
        if heartbeat is not None:
            heartbeat.evaluated(shown)

    model.train()
    window: list[float] = []  # objective (task loss + regulariser) of each micro-batch since the last log
    task_window: list[float] = []  # the task loss alone, same micro-batches
    eval_every = tcfg.eval_steps if tcfg.eval_steps > 0 else 0
    t_start, eval_before = time.perf_counter(), state.eval_time_s
    while state.step < n_steps and state.epoch < n_epochs:
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(state.epoch)
        loader = train_loader
        if state.batches_in_epoch:
            loader = accelerator.skip_first_batches(train_loader, state.batches_in_epoch)
        for batch in loader:
            state.batches_in_epoch += 1
            with accelerator.accumulate(model):
                out = model(**task.model_inputs(batch))
                task_loss = out.loss
                extra = method.extra_loss(unwrapped)  # e.g. DCFT's orthogonal regulariser (paper eq. 4)
                loss = task_loss if extra is None else task_loss + extra
                if not _all_finite(loss, accelerator):
                    if tcfg.nan_policy != "skip":
                        raise NonFiniteLoss(state.step + 1, float(loss.detach()))
                    optimizer.zero_grad(set_to_none=True)
                    if accelerator.sync_gradients:
                        state.skipped_steps += 1
                        log.write(type="skip", step=state.step + 1, reason="non-finite loss")
                    continue
                accelerator.backward(loss)
                window.append(float(loss.detach()))
                task_window.append(float(task_loss.detach()))
                if accelerator.sync_gradients:
                    if tcfg.max_grad_norm and tcfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(trainable, tcfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    method.after_step(unwrapped, state.step + 1, optimizer)
                    optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            if progress is not None:
                progress.update(1)
            if heartbeat is not None:
                heartbeat.beat(state.step, state.last_loss)
            if state.batches_in_epoch >= len(train_loader):  # this step ended an epoch
                state.epoch += 1
                state.batches_in_epoch = 0
                epoch_done = True
            else:
                epoch_done = False
            if state.step % max(1, tcfg.log_steps) == 0 or state.step == n_steps:
                mean, task_mean = _global_mean(window, accelerator), _global_mean(task_window, accelerator)
                state.last_loss, state.last_task_loss = mean, task_mean
                lr = scheduler.get_last_lr()[0]
                # loss = task_loss + reg_loss: what the optimizer minimised; task_loss is comparable across methods
                log.write(type="train", step=state.step, epoch=state.epoch, loss=mean, task_loss=task_mean,
                          reg_loss=mean - task_mean, lr=lr, elapsed_s=time.perf_counter() - t_start)
                accelerator.log({"train/loss": mean, "train/task_loss": task_mean, "train/reg_loss": mean - task_mean,
                                 "train/lr": lr, "train/epoch": state.epoch}, step=state.step)
                window, task_window = [], []
            if eval_every and state.step % eval_every == 0 and state.step < n_steps:
                run_eval()
            if checkpointer is not None and tcfg.checkpoint_steps > 0 and state.step % tcfg.checkpoint_steps == 0:
                checkpointer(state, unwrapped, optimizer, scheduler)
            if state.step >= n_steps or epoch_done:
                break
        else:  # the loader ended on micro-batches that completed no optimizer step
            state.epoch += 1
            state.batches_in_epoch = 0
        if state.step >= n_steps:
            break
    state.train_time_s += time.perf_counter() - t_start - (state.eval_time_s - eval_before)  # eval apart
    run_eval()
    if progress is not None:
        progress.close()
    if heartbeat is not None:
        heartbeat.beat(state.step, state.last_loss, force=True)  # the run's last state, evaluation included
    if checkpointer is not None:
        checkpointer(state, unwrapped, optimizer, scheduler)
    log.write(type="end", step=state.step, best_score=state.best_score, best_step=state.best_step)
    return state


def _global_mean(values: list[float], accelerator) -> float:
    """Mean of a logging window; with several processes the mean over the global batch, not rank 0's shard."""
    mean = sum(values) / max(1, len(values))
    if accelerator.num_processes > 1:
        mean = float(accelerator.reduce(torch.tensor(mean, device=accelerator.device), "mean"))
    return mean


def _all_finite(loss: torch.Tensor, accelerator) -> bool:
    """Whether the loss is finite on every process (all ranks take the same branch)."""
    ok = torch.isfinite(loss.detach()).all().float()
    if accelerator.num_processes > 1:
        ok = accelerator.reduce(ok.to(accelerator.device), reduction="sum") == accelerator.num_processes
    return bool(ok)
