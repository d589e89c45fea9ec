"""GLUE as a `Task`: the eight tasks of paper Table 1, their metrics, and the best-score rule.

Data come from `dcft.data.glue` (Hub or GLUE tsv folder, one schema), metrics from
`dcft.metrics.glue` (the GLUE metric's own definitions, offline). The score used to pick the
best evaluation is the paper's metric: CoLA Matthews correlation, STS-B Pearson, MNLI matched
accuracy, accuracy elsewhere.

`holdout > 0` sets a seeded slice of the training set aside as a further evaluation set `holdout`:
the best step is then chosen on the holdout score and the dev metrics of that step are
reported beside it, a protocol that never selects on dev. `pad_to_max_length` pads every batch to
`max_len` tokens, as the authors' scripts (`pad_to_max_length=True` in their run_glue.py), which
matters for training time, not for the result.

Each evaluation writes its predictions (`<run>/predictions/<set>.tsv`, GLUE's `index`/`prediction`
layout with the gold `label`), and a run records each set's chance level (`baseline`, `chance_metrics`):
what always predicting the majority class of that set scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcft.data.glue import (GLUE_TASKS, HUB_DATASET, holdout_count, load_glue, read_glue_tsv, require_hub_or_cache,
                             split_holdout, subsample,
                            tokenize_glue, tsv_path)
from dcft.metrics.glue import glue_metrics, predictions_from_logits
from dcft.tasks.base import Task, TaskData


PREDICTIONS_DIR = "predictions"  # <run>/predictions/<eval set>.tsv: the last evaluation's (best/: the best one's)


class GlueTask(Task):
    """One GLUE task from the Hub (default) or from `glue_dir` in the original GLUE layout."""

    head = "classification"

    HOLDOUT = "holdout"  # name of the held-out evaluation set
    baseline_rule = ("chance level from the evaluated set's own labels: always predicting its majority class "
                     "(accuracy, F1), Matthews correlation 0 (CoLA), Pearson and Spearman 0 (STS-B)")
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
        # evaluation rows keep the example's `idx` (it travels with the outputs, for the predictions file)
        return TaskData(train=tok(train), evals={s: tok(ds).add_column("idx", ds["idx"]) for s, ds in evals.items()},
                        collate=collate)

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
        if out_dir is not None:
            self.write_predictions(Path(out_dir) / PREDICTIONS_DIR / f"{eval_name}.tsv", preds, gathered)
        return {f"{eval_name}/{k}": float(v) for k, v in glue_metrics(self.name, preds, gathered["labels"]).items()}

    def write_predictions(self, path: Path, preds: np.ndarray, gathered: dict[str, np.ndarray]) -> None:
        """One evaluation's predictions in GLUE's submission layout, `index<TAB>prediction` (the class
        name, or the STS-B score), with the gold `label` beside; rows in the split's order (`index` is the
        example's `idx`: its row in the split file, or in the training split for the held-out slice)."""
        idx = gathered.get("idx")
        idx = np.arange(len(preds)) if idx is None else np.asarray(idx).reshape(-1)
        names = self.spec.label_names
        show = (lambda v: f"{float(v):.4f}") if self.spec.is_regression else (lambda v: names[int(v)])  # noqa: E731
        order = np.argsort(idx, kind="stable")
        lines = ["index\tprediction\tlabel"] + [f"{int(idx[i])}\t{show(preds[i])}\t{show(gathered['labels'][i])}"
                                              for i in order]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)

    def score_key(self) -> str:
        """The paper's metric on the first dev set, or on the held-out slice when `holdout > 0`."""
        split = self.HOLDOUT if self.holdout > 0 else self.spec.eval_splits[0]
        return f"{split}/{self.spec.main_metric}"

    def baseline(self, data: TaskData) -> dict[str, float]:
        """Chance level of every evaluation set, from its own labels (`baseline_rule`)."""
        out = {}
        for name, ds in data.evals.items():
            out.update({f"{name}/{k}": v for k, v in chance_metrics(self.name, ds["labels"]).items()})
        return out

    def check_source(self) -> None:
        if not self.glue_dir:
            require_hub_or_cache(HUB_DATASET, self.spec.hub_name, "data.glue_dir",
                                 f"a folder with {self.spec.dir_name}/train.tsv and {self.spec.dir_name}/"
                                 f"{'dev.tsv' if len(self.spec.eval_splits) == 1 else 'dev_matched.tsv ...'}")


def chance_metrics(task: str, labels) -> dict[str, float]:
    """The metrics of a model that learned nothing (`GlueTask.baseline_rule`): the constant majority-class
    prediction scored by `glue_metrics` (its MCC is 0 by definition), correlation 0 for regression."""
    labels = np.asarray(labels)
    if GLUE_TASKS[task].is_regression:
        return {"pearson": 0.0, "spearmanr": 0.0}
    values, counts = np.unique(labels, return_counts=True)
    majority = values[np.argmax(counts)]  # ties: the lowest class id
    return glue_metrics(task, np.full_like(labels, majority), labels)
