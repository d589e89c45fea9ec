"""The interface between a task (GLUE, SQuAD) and the training loop.

The loop (`dcft.harness.train`) knows no task by name: a task gives it tokenised datasets, a
collator, the model head it needs, and turns the gathered model outputs of one evaluation
set into metrics. Metric keys are `<eval set>/<metric>` (e.g. `validation_matched/accuracy`);
`score` picks the one number used to track the best checkpoint (the paper reports the best
dev score, Table 1 caption).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class TaskData:
    """Tokenised datasets of one task, ready for a `DataLoader`."""

    train: Any  # a `datasets.Dataset` (or any map-style dataset) of model features
    evals: dict[str, Any]  # evaluation set name -> dataset of model features
    collate: Callable[[list[dict]], dict]  # batch builder (pads)
    extras: dict[str, Any] = field(default_factory=dict)  # what post-processing needs (e.g. SQuAD examples)


class Task:
    """Base class of a task the loop can train and evaluate."""

    name: str = "task"
    eval_order_free: bool = False  # metrics ignore the order of evaluation examples (labels travel with them)
    head: str = "classification"  # which model head: "classification" or "qa"
    num_labels: int = 2  # classification: label count (1 = regression); ignored for QA
    baseline_rule: str = ""  # how `baseline` computes chance levels (stored beside them in result.json)

    def load(self, tokenizer: Any, max_len: int, limit: int | None = None, seed: int = 0,
             limit_eval: int | None = None) -> TaskData:
        """Load, optionally keep `limit` training / `limit_eval` evaluation examples, and tokenise."""
        raise NotImplementedError

    def data_files(self) -> dict[str, Path]:
        """The local files this task reads, by split (empty when it loads from the Hub): what a
        run's identity fingerprints (`dcft.harness.identity.data_fingerprint`)."""
        return {}

    def hub_dataset(self) -> str:
        """The Hub dataset this task loads when it has no local files."""
        raise NotImplementedError

    def train_pool_size(self) -> int | None:
        """The number of training examples `data.limit_train` draws from, where it is known before
        loading (a limit at or above it limits nothing: `dcft.harness.identity.effective_config`); None here."""
        return None

    def outputs(self, model_output: Any) -> dict[str, Any]:
        """The tensors of a model output to gather for evaluation (default: `logits`)."""
        return {"logits": model_output.logits}

    def compute_metrics(self, eval_name: str, gathered: dict[str, np.ndarray], data: TaskData,
                        out_dir: Path | None = None) -> dict[str, float]:
        """Metrics of one evaluation set from the gathered outputs (and labels under `labels`).
        `out_dir`, when given, is where a task may write predictions (main process only)."""
        raise NotImplementedError

    def score(self, metrics: dict[str, float]) -> float:
        """The single number the best checkpoint is chosen by (higher is better)."""
        return metrics[self.score_key()]

    def score_key(self) -> str:
        """The metrics key `score` reads, `<eval set>/<metric>` (names the set for a person)."""
        raise NotImplementedError

    def baseline(self, data: TaskData) -> dict[str, float]:
        """What a model that learned nothing scores on each evaluation set, by metrics key (empty when
        the task has no such rule); for the warning when a run scores at or below it."""
        return {}

    def check_source(self) -> None:
        """Fail fast, in one line, when the data cannot be had (e.g. no local files while the Hub is
        offline), before a run folder or any download attempt."""

    def model_inputs(self, batch: dict) -> dict:
        """The keys of a collated batch the model's forward takes."""
        keep = ("input_ids", "attention_mask", "token_type_ids", "labels", "start_positions", "end_positions")
        return {k: v for k, v in batch.items() if k in keep}
