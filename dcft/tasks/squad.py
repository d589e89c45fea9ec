"""SQuAD v1.1 / v2.0 as a `Task` (paper Table 3: EM / F1 on the dev sets).

Data, windowing and post-processing come from `dcft.data.squad`, scores from `dcft.metrics.squad`
(the official scripts' logic). Training features carry `start_positions` / `end_positions`; the
evaluation features fed to the model carry only the model inputs, while their offsets and example
ids stay in `TaskData.extras["validation"] = (examples, features)`, row-aligned with the gathered
logits. Batches are padded dynamically on the right (`QACollator`); gathered logits of batches of
different widths may arrive padded with filler, and post-processing reads only each window's own
positions, so no fixed padding length is needed.

Metrics (`validation/<key>`): v1 `exact_match`, `f1`; v2 the official v2.0 keys `exact`, `f1`,
`total`, `HasAns_*`, `NoAns_*` at `null_threshold`, and `best_exact`, `best_f1` with their thresholds
found on the dev set (the search over the null odds uses the best non-null span of every question,
so thresholds on both sides of `null_threshold` are explored). The score is `validation/f1`.

Files written to `out_dir` (overwritten at each evaluation): `predictions.json` ({id: answer}, v2
with the threshold applied: the submission format); v2 also `null_odds.json` ({id: null score - best
span score}) and `predictions_best_span.json` ({id: best non-null span}). Re-score offline with
`python -m dcft.metrics.squad --version v2 --data dev-v2.0.json --predictions predictions_best_span.json
--na-probs null_odds.json --na-prob-thresh <null_threshold>` (all keys), or with `predictions.json`
as the official workflow does (same `exact` / `f1` / HasAns / NoAns).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dcft.data.glue import require_hub_or_cache, subsample
from dcft.data.squad import (FILES, HUB_DATASETS, MODEL_KEYS, QACollator, best_span_texts, check_version,
                             featurize, load_squad, postprocess_predictions)
from dcft.metrics.squad import squad_v1_scores, squad_v2_scores
from dcft.tasks.base import Task, TaskData

EVAL_NAME = "validation"


class SquadTask(Task):
    """SQuAD v1.1 (`version="v1"`) or v2.0 (`"v2"`), from the Hub or `squad_dir` (official JSON)."""

    head = "qa"
    num_labels = 2  # start and end logits

    def __init__(self, version: str = "v1", squad_dir: str | None = None, doc_stride: int = 128,
                 n_best: int = 20, max_answer_length: int = 30, null_threshold: float = 0.0):
        self.version = check_version(version)
        self.name = "squad" if self.version == "v1" else "squad_v2"
        self.squad_dir = squad_dir
        self.doc_stride = doc_stride  # tokens shared by consecutive context windows
        self.n_best = n_best  # candidate spans kept per window and per question
        self.max_answer_length = max_answer_length  # longest answer, tokens
        self.null_threshold = null_threshold  # v2: "no answer" when null score - best span score exceeds it

    @property
    def version_2(self) -> bool:
        return self.version == "v2"

    def data_files(self) -> dict[str, Path]:
        if not self.squad_dir:
            return {}
        return {split: Path(self.squad_dir).expanduser() / name for split, name in FILES[self.version].items()}

    def hub_dataset(self) -> str:
        return HUB_DATASETS[self.version]

    def load(self, tokenizer, max_len: int, limit: int | None = None, seed: int = 0,
             limit_eval: int | None = None) -> TaskData:
        raw = load_squad(self.version, self.squad_dir)
        train = featurize(subsample(raw["train"], limit, seed), tokenizer, max_len, self.doc_stride, train=True)
        examples = subsample(raw[EVAL_NAME], limit_eval, seed)
        features = featurize(examples, tokenizer, max_len, self.doc_stride, train=False)
        model_eval = features.select_columns([k for k in MODEL_KEYS if k in features.column_names])
        collate = QACollator(tokenizer.pad_token_id, getattr(tokenizer, "pad_token_type_id", 0) or 0)
        return TaskData(train=train, evals={EVAL_NAME: model_eval}, collate=collate,
                        extras={EVAL_NAME: (examples, features)})

    def outputs(self, model_output) -> dict:
        return {"start_logits": model_output.start_logits, "end_logits": model_output.end_logits}

    def compute_metrics(self, eval_name: str, gathered: dict[str, np.ndarray], data: TaskData,
                        out_dir: Path | None = None) -> dict[str, float]:
        examples, features = data.extras[eval_name]
        preds, null_odds, nbest = postprocess_predictions(
            examples, features, gathered["start_logits"], gathered["end_logits"], version_2=self.version_2,
            n_best=self.n_best, max_answer_length=self.max_answer_length,
            null_score_diff_threshold=self.null_threshold)
        gold = [{"id": i, "answers": a} for i, a in zip(examples["id"], examples["answers"])]
        if self.version_2:
            spans = best_span_texts(nbest)
            scores = squad_v2_scores(spans, gold, na_probs=null_odds, na_prob_thresh=self.null_threshold)
        else:
            scores = squad_v1_scores(preds, gold)
        if out_dir is not None:
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_json(out_dir / "predictions.json", preds)
            if self.version_2:
                _write_json(out_dir / "null_odds.json", null_odds)
                _write_json(out_dir / "predictions_best_span.json", spans)
        return {f"{eval_name}/{k}": float(v) for k, v in scores.items()}

    def score_key(self) -> str:
        return f"{EVAL_NAME}/f1"

    def check_source(self) -> None:
        if not self.squad_dir:
            require_hub_or_cache(self.hub_dataset(), None, "data.squad_dir",
                                 f"a folder with {' and '.join(FILES[self.version].values())}")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")  # inf -> Infinity
    tmp.replace(path)
