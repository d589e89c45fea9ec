"""GLUE as a `Task`: the eight tasks of paper Table 1, their metrics, and the best-score rule.

Data come from `dcft.data.glue` (Hub or GLUE tsv folder, one schema), metrics from
`dcft.metrics.glue` (the GLUE metric's own definitions, offline). The score used to pick the
best evaluation is the paper's metric: CoLA Matthews correlation, STS-B Pearson, MNLI matched
accuracy, accuracy elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcft.data.glue import GLUE_TASKS, HUB_DATASET, load_glue, subsample, tokenize_glue, tsv_path
from dcft.metrics.glue import glue_metrics, predictions_from_logits
from dcft.tasks.base import Task, TaskData


class GlueTask(Task):
    """One GLUE task from the Hub (default) or from `glue_dir` in the original GLUE layout."""

    head = "classification"

    def __init__(self, name: str, glue_dir: str | None = None):
        if name not in GLUE_TASKS:
            raise ValueError(f"task={name!r} is not a GLUE task; valid: {', '.join(GLUE_TASKS)}")
        self.spec = GLUE_TASKS[name]
        self.name = name
        self.glue_dir = glue_dir
        self.num_labels = self.spec.num_labels

    def load(self, tokenizer, max_len: int, limit: int | None = None, seed: int = 0,
             limit_eval: int | None = None) -> TaskData:
        from transformers import DataCollatorWithPadding

        raw = load_glue(self.name, self.glue_dir)
        train = subsample(raw["train"], limit, seed)
        evals = {s: subsample(raw[s], limit_eval, seed) for s in self.spec.eval_splits}
        tok = lambda ds: tokenize_glue(ds, tokenizer, self.spec, max_len)  # noqa: E731
        return TaskData(train=tok(train), evals={s: tok(ds) for s, ds in evals.items()},
                        collate=DataCollatorWithPadding(tokenizer))

    def data_files(self) -> dict[str, Path]:
        if not self.glue_dir:
            return {}
        return {s: tsv_path(self.spec, self.glue_dir, s) for s in ("train",) + self.spec.eval_splits}

    def hub_dataset(self) -> str:
        return f"{HUB_DATASET}/{self.spec.hub_name}"

    def compute_metrics(self, eval_name: str, gathered: dict[str, np.ndarray], data: TaskData,
                        out_dir: Path | None = None) -> dict[str, float]:
        preds = predictions_from_logits(self.name, gathered["logits"])
        return {f"{eval_name}/{k}": float(v) for k, v in glue_metrics(self.name, preds, gathered["labels"]).items()}

    def score(self, metrics: dict[str, float]) -> float:
        return metrics[f"{self.spec.eval_splits[0]}/{self.spec.main_metric}"]
