"""GLUE as a `Task`: the eight tasks of paper Table 1, their metrics, and the best-score rule.

Data come from `dcft.data.glue` (Hub or GLUE tsv folder, one schema), metrics from
`dcft.metrics.glue` (the GLUE metric's own definitions, offline). The score used to pick the
best evaluation is the paper's metric: CoLA Matthews correlation, STS-B Pearson, MNLI matched
accuracy, accuracy elsewhere.

`holdout > 0` sets a seeded slice of the training set aside as a further evaluation set `holdout`
(issue 13): the best step is then chosen on the holdout score and the dev metrics of that step are
reported beside it, a protocol that never selects on dev. `pad_to_max_length` pads every batch to
`max_len` tokens, as the authors' scripts (`pad_to_max_length=True` in their run_glue.py), which
matters for training time, not for the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcft.data.glue import (GLUE_TASKS, HUB_DATASET, holdout_count, load_glue, read_glue_tsv, split_holdout, subsample,
                            tokenize_glue, tsv_path)
from dcft.metrics.glue import glue_metrics, predictions_from_logits
from dcft.tasks.base import Task, TaskData


class GlueTask(Task):
    """One GLUE task from the Hub (default) or from `glue_dir` in the original GLUE layout."""

    head = "classification"

    HOLDOUT = "holdout"  # name of the held-out evaluation set
    eval_order_free = True  # accuracy, F1, MCC, Pearson and Spearman ignore the example order

    def __init__(self, name: str, glue_dir: str | None = None, holdout: float = 0.0,
                 pad_to_max_length: bool = False):
        if name not in GLUE_TASKS:
            raise ValueError(f"task={name!r} is not a GLUE task; valid: {', '.join(GLUE_TASKS)}")
        if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
            raise ValueError(f"data.holdout={holdout!r}: must be a fraction in [0, 1) of the training set "
                             f"(0 = select on dev, as the paper)")
        self.spec = GLUE_TASKS[name]
        self.name = name
        self.glue_dir = glue_dir
        self.holdout = float(holdout)
        self.pad_to_max_length = bool(pad_to_max_length)
        self.num_labels = self.spec.num_labels
        self._pool: int | None = None  # train_pool_size, counted once

    def load(self, tokenizer, max_len: int, limit: int | None = None, seed: int = 0,
             limit_eval: int | None = None) -> TaskData:
        from transformers import DataCollatorWithPadding

        raw = load_glue(self.name, self.glue_dir)
        train, evals = raw["train"], {}
        if self.holdout > 0:  # set aside before any limit, so the held-out rows never depend on it
            train, held = split_holdout(train, self.holdout, seed)
            evals[self.HOLDOUT] = subsample(held, limit_eval, seed)
        train = subsample(train, limit, seed)
        evals.update({s: subsample(raw[s], limit_eval, seed) for s in self.spec.eval_splits})
        tok = lambda ds: tokenize_glue(ds, tokenizer, self.spec, max_len)  # noqa: E731
        collate = (DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_len)
                   if self.pad_to_max_length else DataCollatorWithPadding(tokenizer))
        return TaskData(train=tok(train), evals={s: tok(ds) for s, ds in evals.items()}, collate=collate)

    def data_files(self) -> dict[str, Path]:
        if not self.glue_dir:
            return {}
        return {s: tsv_path(self.spec, self.glue_dir, s) for s in ("train",) + self.spec.eval_splits}

    def hub_dataset(self) -> str:
        return f"{HUB_DATASET}/{self.spec.hub_name}"

    def train_pool_size(self) -> int | None:
        """Rows of the local `train.tsv` left after the held-out slice (None from the Hub)."""
        if not self.glue_dir:
            return None
        if self._pool is None:
            n = len(read_glue_tsv(self.spec, tsv_path(self.spec, self.glue_dir, "train")))
            self._pool = n - holdout_count(n, self.holdout) if self.holdout > 0 else n
        return self._pool

    def compute_metrics(self, eval_name: str, gathered: dict[str, np.ndarray], data: TaskData,
                        out_dir: Path | None = None) -> dict[str, float]:
        preds = predictions_from_logits(self.name, gathered["logits"])
        return {f"{eval_name}/{k}": float(v) for k, v in glue_metrics(self.name, preds, gathered["labels"]).items()}

    def score(self, metrics: dict[str, float]) -> float:
        """The paper's metric on the first dev set, or on the held-out slice when `holdout > 0`."""
        split = self.HOLDOUT if self.holdout > 0 else self.spec.eval_splits[0]
        return metrics[f"{split}/{self.spec.main_metric}"]
