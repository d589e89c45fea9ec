"""Helpers for the training-loop tests in this folder: drive `dcft.harness.train.fit` on a tiny model built
from config with a few in-memory examples, and see what it did from the outside.

* `RecordingTask` is RTE whose `model_inputs` keeps a copy of every training batch, so a reference
  loop written in a test can replay exactly the batches `fit` saw (the loader's shuffling is then
  no concern of the oracle).
* `record_lr` wraps a method's optimizer so the learning rate of every group is noted each time the
  optimizer really steps (the lr *used*, not the one logged after the scheduler moved on).
* `hf_linear_factor` is the linear warm-up / linear decay multiplier written out by hand (the
  schedule of the HF Trainer the authors ran, `hyperparameters.md`), the oracle for the schedule.

Only public behaviour is used: `fit`, `Method.optimizer`, `Task.model_inputs`, `log.jsonl`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from conftest import compose_cfg, model_cfg
from dcft.tasks.base import TaskData
from dcft.tasks.glue import GlueTask

SEQ = 10  # tokens per example (no padding: every example has the same length)


def dropout_free_model(name: str = "tiny-deberta", seed: int = 0) -> nn.Module:
    """A tiny classification model from `conf/model/<name>.yaml` with every dropout at 0."""
    from dcft.harness.models import build_model

    cfg = model_cfg(name)
    cfg["arch"] = {**cfg["arch"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    return build_model(cfg, head="classification", num_labels=2, cls_dropout=0.0, seed=seed)


def assert_deterministic_in_train_mode(model: nn.Module) -> None:
    """Dropout really is off: two forward passes in training mode give identical logits."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, 260, (2, SEQ), generator=g)
    was = model.training
    model.train()
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = model(input_ids=ids).logits
    model.train(was)
    assert torch.equal(a, b), "dropout is not off"


def examples(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """`n` random RTE-shaped examples (random ids, labels 0/1), all of length `SEQ`."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(4, 260, (SEQ,), generator=g)
        ids[0] = 1
        out.append({"input_ids": ids, "attention_mask": torch.ones(SEQ, dtype=torch.long),
                    "labels": torch.randint(0, 2, (), generator=g)})
    return out


def stack(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([ex[k] for ex in batch]) for k in batch[0]}


def task_data(n_train: int, n_eval: int = 6) -> TaskData:
    return TaskData(train=examples(n_train, seed=0), evals={"validation": examples(n_eval, seed=1)}, collate=stack)


class RecordingTask(GlueTask):
    """RTE that keeps a copy of every batch the model trains on (training mode only)."""

    def __init__(self, model: nn.Module):
        super().__init__("rte")
        self._model = model
        self.batches: list[dict[str, torch.Tensor]] = []

    def model_inputs(self, batch: dict) -> dict:
        inputs = super().model_inputs(batch)
        if self._model.training:
            self.batches.append({k: v.detach().clone() for k, v in inputs.items()})
        return inputs


def record_lr(method) -> list[list[float]]:
    """Make `method.optimizer(...)` return its optimizer with `step` wrapped: each real step
    appends the lr of every parameter group to the returned list."""
    used: list[list[float]] = []
    build = method.optimizer

    def optimizer(*args, **kwargs):
        opt = build(*args, **kwargs)
        inner = opt.step

        def step(*a, **k):
            used.append([g["lr"] for g in opt.param_groups])
            return inner(*a, **k)

        opt.step = step
        return opt

    method.optimizer = optimizer
    return used


def train_cfg(*overrides: str):
    """The composed `train` config of a tiny run (as `run.py` composes it) with these overrides."""
    base = ["model=tiny-deberta", "task=rte", "method=dcft", "train.progress=false", "train.eval_steps=0",
            "train.log_steps=1", "train.checkpoint_steps=0", "train.mixed_precision=no", "train.device=cpu",
            "train.epochs=1", "train.max_steps=-1", "train.warmup_steps=0", "train.warmup_ratio=0.0",
            "train.weight_decay=0.0", "train.grad_accum=1"]
    return compose_cfg(base + list(overrides)).train


def run_fit(model, method, task, data, tcfg, run_dir: Path | None = None):
    from dcft.harness.experiment import make_accelerator
    from dcft.harness.train import fit

    return fit(model, method, task, data, tcfg, make_accelerator(tcfg), run_dir, seed=0)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def hf_linear_factor(k: int, warmup: int, total: int) -> float:
    """The lr multiplier after `k` optimizer steps: k / warmup during warm-up, then linear to 0."""
    if k < warmup:
        return float(k) / float(max(1, warmup))
    return max(0.0, float(total - k) / float(max(1, total - warmup)))


def clone(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
