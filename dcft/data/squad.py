"""SQuAD v1.1 / v2.0 data: loading (Hub or the official JSON files), windowed tokenisation, and
post-processing of start/end logits into answer strings.

Loading. `load_squad(version, squad_dir)` returns {"train", "validation"} `datasets.Dataset`s in
the Hugging Face Hub schema: `id`, `title`, `context`, `question`,
`answers = {"text": [...], "answer_start": [...]}` (empty lists for an unanswerable v2 question).

- `squad_dir=None`: `datasets.load_dataset("rajpurkar/squad")` (v1) or `("rajpurkar/squad_v2")` (v2).
- `squad_dir=PATH`: the official files `<PATH>/train-v1.1.json`, `dev-v1.1.json` (v2: `train-v2.0.json`,
  `dev-v2.0.json`), nested as `data -> paragraphs -> qas`. Texts are kept verbatim (no stripping), all
  gold answers are kept in file order (duplicates included), as the Hub builder does.

Problems raise `DataError` (a `ValueError`, shared with `dcft.data.glue`) naming the file or option.

Tokenisation. Each question is paired with its context; a context too long for `max_len` is split
into overlapping windows (`doc_stride` tokens shared by consecutive windows, truncation of the
context only). The question comes first unless the tokenizer pads on the left (then the context
comes first), as in the Hugging Face examples. Features are not padded: `QACollator` pads each batch
on the right, so a token's position in a feature is its column in the model's logits.

- `prepare_train_features`: `start_positions` / `end_positions` are the first and last tokens of the
  answer; the CLS token's index when the window does not contain the whole answer or the question is
  unanswerable.
- `prepare_eval_features`: `example_id`, `cls_index` and `offset_mapping` (character spans in the
  context; None for question, special and other non-context tokens) for post-processing.

Post-processing (`postprocess_predictions`, pure numpy). For every window of an example, all spans
with start <= end, length <= `max_answer_length` tokens and both ends on context tokens are scored
start_logit + end_logit (an exhaustive search over the band, not only the top start and end
indices); the `n_best` best spans of all windows form the candidate list (a span never crosses
windows or touches the question). The null score is CLS start + CLS end logit, minimised over
windows. v2: `null_odds = null score - best span score`; the prediction is "" when
`null_odds > null_score_diff_threshold`. Logits may be wider than a feature (batches padded to
different lengths, then concatenated with filler): only a feature's own positions are read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import datasets
import numpy as np

from dcft.data.glue import DataError

HUB_DATASETS = {"v1": "rajpurkar/squad", "v2": "rajpurkar/squad_v2"}
FILES = {"v1": {"train": "train-v1.1.json", "validation": "dev-v1.1.json"},
         "v2": {"train": "train-v2.0.json", "validation": "dev-v2.0.json"}}
SPLITS = ("train", "validation")
_VERSIONS = {"v1": "v1", "v1.1": "v1", "1.1": "v1", "v2": "v2", "v2.0": "v2", "2.0": "v2"}

FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "title": datasets.Value("string"),
    "context": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answers": {"text": datasets.List(datasets.Value("string")),
                "answer_start": datasets.List(datasets.Value("int32"))},
})
MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")  # tokenizer outputs the model takes


def check_version(version: str) -> str:
    """"v1" or "v2" ("v1.1" and "v2.0" are accepted too)."""
    key = _VERSIONS.get(str(version).lower())
    if key is None:
        raise ValueError(f"SQuAD version {version!r}; valid: v1 (SQuAD v1.1), v2 (SQuAD v2.0)")
    return key


# --- the official JSON files --------------------------------------------------------------------------
def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{path}: {where} has no {key!r} field (official SQuAD JSON: "
                        f"data -> paragraphs -> qas -> answers)")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{path}: {where} field {key!r} is {type(value).__name__}, expected {names}")
    return value


def read_squad_json(path: str | Path) -> list[dict[str, Any]]:
    """The questions of an official SQuAD JSON file (v1.1 or v2.0), flattened to Hub-schema dicts
    in file order. Unanswerable v2 questions (`is_impossible`) get empty answer lists (their
    `plausible_answers` are not gold answers)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SQuAD file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); expected the official SQuAD format") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e})") from None
    articles = _need(raw, "data", list, "the top level", path)
    out: list[dict[str, Any]] = []
    for a, article in enumerate(articles):
        where_a = f"data[{a}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, para in enumerate(_need(article, "paragraphs", list, where_a, path)):
            where_p = f"{where_a}.paragraphs[{p}]"
            context = _need(para, "context", str, where_p, path)
            for q, qa in enumerate(_need(para, "qas", list, where_p, path)):
                where_q = f"{where_p}.qas[{q}]"
                qid = _need(qa, "id", str, where_q, path)
                where_q = f"{where_q} (id {qid!r})"
                question = _need(qa, "question", str, where_q, path)
                # v2 unanswerable: no gold answer (its `plausible_answers` are not gold)
                answers = [] if qa.get("is_impossible") else _need(qa, "answers", list, where_q, path)
                texts, starts = [], []
                for i, ans in enumerate(answers):
                    texts.append(_need(ans, "text", str, f"{where_q}.answers[{i}]", path))
                    starts.append(_need(ans, "answer_start", int, f"{where_q}.answers[{i}]", path))
                out.append({"id": qid, "title": str(title), "context": context, "question": question,
                            "answers": {"text": texts, "answer_start": starts}})
    if not out:
        raise DataError(f"{path}: no questions found")
    return out


def squad_json_to_dataset(path: str | Path) -> datasets.Dataset:
    """One official SQuAD JSON file as a Hub-schema `Dataset`."""
    rows = read_squad_json(path)
    cols = {k: [r[k] for r in rows] for k in FEATURES}
    return datasets.Dataset.from_dict(cols, features=FEATURES)


# --- loading ------------------------------------------------------------------------------------------
def _dir_advice(version: str) -> str:
    files = FILES[version]
    return (f"set data.squad_dir=PATH to a folder holding the official SQuAD {_label(version)} files "
            f"{files['train']} and {files['validation']}")


def _label(version: str) -> str:
    return {"v1": "v1.1", "v2": "v2.0"}[version]


def _from_hub_split(ds: datasets.Dataset, name: str, split: str) -> datasets.Dataset:
    missing = [c for c in FEATURES if c not in ds.column_names]
    if missing:
        raise DataError(f"Hub dataset {name} split {split!r}: missing column(s) {missing}; found {ds.column_names}")
    ds = ds.select_columns(list(FEATURES))
    return ds if ds.features == FEATURES else ds.cast(FEATURES, keep_in_memory=True)


def _load_hub(version: str) -> dict[str, datasets.Dataset]:
    name = HUB_DATASETS[version]
    try:
        dd = datasets.load_dataset(name)
    except Exception as e:  # offline, no cache, connection errors: the same advice
        msg = str(e).splitlines()[0] if str(e) else ""
        raise DataError(
            f"could not load SQuAD {_label(version)} from the Hugging Face Hub ({name}): "
            f"{type(e).__name__}: {msg}. Either {_dir_advice(version)}, or make the Hub reachable."
        ) from e
    absent = [s for s in SPLITS if s not in dd]
    if absent:
        raise DataError(f"Hub dataset {name} has no split(s) {absent}; found {list(dd)}")
    return {s: _from_hub_split(dd[s], name, s) for s in SPLITS}


def load_squad(version: str = "v1", squad_dir: str | Path | None = None) -> dict[str, datasets.Dataset]:
    """{"train", "validation"} of SQuAD v1.1 ("v1") or v2.0 ("v2") in the Hub schema, from
    `squad_dir` (official JSON files) if given, else from the Hub."""
    version = check_version(version)
    if squad_dir is None or str(squad_dir) == "":
        return _load_hub(version)
    root = Path(squad_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data.squad_dir={str(squad_dir)!r} is not a directory; {_dir_advice(version)}")
    out = {}
    for split in SPLITS:
        path = root / FILES[version][split]
        if not path.is_file():
            raise DataError(f"SQuAD {_label(version)} {split} file not found: expected {path} "
                            f"(data.squad_dir={str(squad_dir)!r} must hold {FILES[version]['train']} "
                            f"and {FILES[version]['validation']})")
        out[split] = squad_json_to_dataset(path)
    return out


# --- tokenisation -------------------------------------------------------------------------------------
def _tokenize(examples: Mapping[str, list], tokenizer: Any, max_len: int, doc_stride: int):
    """Windows of (question, context) pairs; returns the encoding and the context's sequence id."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("SQuAD features need a fast tokenizer (character offset mappings)")
    if max_len < 1 or doc_stride < 0:
        raise ValueError(f"need max_len >= 1 and doc_stride >= 0, got max_len={max_len}, doc_stride={doc_stride}")
    questions = [q.lstrip() for q in examples["question"]]  # leading blanks would only waste tokens
    contexts = examples["context"]
    q_lens = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    room = max_len - tokenizer.num_special_tokens_to_add(pair=True)
    for i, q_len in enumerate(q_lens):  # the tokenizer would abort (panic) on these
        if room - q_len <= doc_stride:
            raise ValueError(
                f"SQuAD question {examples['id'][i]!r} has {q_len} tokens: with max_len={max_len} the "
                f"context window would be {room - q_len} tokens, which must exceed doc_stride={doc_stride}; "
                f"raise max_len or lower doc_stride")
    context_first = tokenizer.padding_side == "left"
    pair = (contexts, questions) if context_first else (questions, contexts)
    enc = tokenizer(*pair, truncation="only_first" if context_first else "only_second", max_length=max_len,
                    stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding=False)
    return enc, (0 if context_first else 1)


def _cls_index(input_ids: Sequence[int], tokenizer: Any) -> int:
    cls = tokenizer.cls_token_id
    return input_ids.index(cls) if cls is not None and cls in input_ids else 0


def _context_range(seq_ids: Sequence[int | None], context_id: int) -> tuple[int, int] | None:
    idx = [k for k, s in enumerate(seq_ids) if s == context_id]
    return (idx[0], idx[-1]) if idx else None  # None: an empty context


def prepare_train_features(examples: Mapping[str, list], tokenizer: Any, max_len: int = 384,
                           doc_stride: int = 128) -> dict[str, list]:
    """Training windows of a batch of examples (columns -> lists, as `Dataset.map(batched=True)`
    passes): model inputs plus `start_positions` / `end_positions` (token indices of the first
    answer; CLS index when it is not wholly inside the window or there is none)."""
    enc, context_id = _tokenize(examples, tokenizer, max_len, doc_stride)
    out = {k: enc[k] for k in MODEL_KEYS if k in enc}
    out["start_positions"], out["end_positions"] = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        cls = _cls_index(enc["input_ids"][i], tokenizer)
        answers = examples["answers"][enc["overflow_to_sample_mapping"][i]]
        start = end = cls
        if answers["text"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            window = _context_range(enc.sequence_ids(i), context_id)
            first, last = window if window else (0, -1)
            if window and offsets[first][0] <= start_char and offsets[last][1] >= end_char:
                # first token ending after the answer's first character, last starting before its end
                s = next(k for k in range(first, last + 1) if offsets[k][1] > start_char)
                e = next(k for k in range(last, first - 1, -1) if offsets[k][0] < end_char)
                if s <= e:
                    start, end = s, e
        out["start_positions"].append(start)
        out["end_positions"].append(end)
    return out


def prepare_eval_features(examples: Mapping[str, list], tokenizer: Any, max_len: int = 384,
                          doc_stride: int = 128) -> dict[str, list]:
    """Evaluation windows: model inputs plus `example_id`, `cls_index` and `offset_mapping` with
    None for every token outside the context."""
    enc, context_id = _tokenize(examples, tokenizer, max_len, doc_stride)
    out = {k: enc[k] for k in MODEL_KEYS if k in enc}
    out["example_id"], out["cls_index"], out["offset_mapping"] = [], [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        seq_ids = enc.sequence_ids(i)
        out["example_id"].append(examples["id"][enc["overflow_to_sample_mapping"][i]])
        out["cls_index"].append(_cls_index(enc["input_ids"][i], tokenizer))
        out["offset_mapping"].append([list(o) if seq_ids[k] == context_id else None for k, o in enumerate(offsets)])
    return out


def featurize(ds: datasets.Dataset, tokenizer: Any, max_len: int = 384, doc_stride: int = 128,
              train: bool = True) -> datasets.Dataset:
    """`prepare_train_features` / `prepare_eval_features` over a Hub-schema dataset (one row per
    window, windows of an example consecutive and in example order)."""
    fn = prepare_train_features if train else prepare_eval_features
    return ds.map(fn, batched=True, remove_columns=ds.column_names, keep_in_memory=True,
                  load_from_cache_file=False, fn_kwargs={"tokenizer": tokenizer, "max_len": max_len,
                                                         "doc_stride": doc_stride},
                  desc=f"tokenize squad {'train' if train else 'eval'}")


class QACollator:
    """Pads a list of features on the right to the longest in the batch (or `pad_to_multiple_of`)
    and stacks them as int64 tensors; keys: input_ids, attention_mask, token_type_ids,
    start_positions, end_positions (others, such as offsets, are dropped). Right padding keeps token
    k of every feature at logits column k, whatever the tokenizer's own padding side."""

    PAD_KEYS = ("input_ids", "attention_mask", "token_type_ids")
    SCALAR_KEYS = ("start_positions", "end_positions")

    def __init__(self, pad_token_id: int, pad_token_type_id: int = 0, pad_to_multiple_of: int | None = None):
        self.pad = {"input_ids": int(pad_token_id), "attention_mask": 0, "token_type_ids": int(pad_token_type_id)}
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        batch = {}
        for key in self.PAD_KEYS:
            if key in features[0]:
                rows = [list(f[key]) + [self.pad[key]] * (width - len(f[key])) for f in features]
                batch[key] = torch.tensor(rows, dtype=torch.long)
        if "attention_mask" not in batch:
            batch["attention_mask"] = torch.tensor(
                [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features], dtype=torch.long)
        for key in self.SCALAR_KEYS:
            if key in features[0]:
                batch[key] = torch.tensor([int(f[key]) for f in features], dtype=torch.long)
        return batch


# --- post-processing ----------------------------------------------------------------------------------
def _column(rows: Any, name: str) -> list:
    """A column of a Dataset, a dict of lists, or a list of dicts."""
    if isinstance(rows, Mapping):
        return list(rows[name])
    if isinstance(rows, datasets.Dataset):
        return list(rows[name])
    return [r[name] for r in rows]


def _has_column(rows: Any, name: str) -> bool:
    if isinstance(rows, Mapping):
        return name in rows
    if isinstance(rows, datasets.Dataset):
        return name in rows.column_names
    return len(rows) > 0 and name in rows[0]


def _window_spans(start: np.ndarray, end: np.ndarray, context: np.ndarray, max_answer_length: int,
                  n_best: int) -> list[tuple[int, int, float]]:
    """The `n_best` best (start, end, score) spans of one window: start <= end < start +
    max_answer_length, both on context tokens; best first (ties: earlier start, then shorter)."""
    n = len(start)
    starts = np.arange(n)[:, None]
    ends = starts + np.arange(max_answer_length)[None, :]  # (n, A): end index of each (start, length)
    inside = ends < n
    ends_c = np.minimum(ends, n - 1)
    valid = inside & context[:, None] & context[ends_c]
    if not valid.any():
        return []
    scores = np.where(valid, start[:, None] + end[ends_c], -np.inf)
    flat = scores.ravel()
    k = min(n_best, int(valid.sum()))
    top = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    top = top[np.lexsort((top, -flat[top]))][:k]  # by score, then by position (start, length)
    return [(int(t // max_answer_length), int(ends.ravel()[t]), float(flat[t])) for t in top]


def postprocess_predictions(examples: Any, features: Any, start_logits: np.ndarray, end_logits: np.ndarray,
                            version_2: bool, n_best: int = 20, max_answer_length: int = 30,
                            null_score_diff_threshold: float = 0.0,
                            ) -> tuple[dict[str, str], dict[str, float], dict[str, list[dict[str, Any]]]]:
    """Answers from start/end logits of the evaluation windows.

    `examples`: the Hub-schema examples (`id`, `context`); `features`: their windows from
    `prepare_eval_features` in the order of the logits rows (`example_id`, `offset_mapping`,
    optional `cls_index`, default 0); `start_logits`, `end_logits`: (n_features, width >= window
    length). Returns `predictions` {id: answer}, `null_odds` {id: null score - best span score}
    (+inf when no valid span exists) and `nbest` {id: candidates, best first: dicts with text,
    score, start_logit, end_logit, start_char, end_char, feature, null, probability}. v1 predicts
    the best span ("" only if no span is valid); v2 adds the null candidate and predicts "" when
    `null_odds > null_score_diff_threshold`."""
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    example_ids = _column(features, "example_id")
    offsets_all = _column(features, "offset_mapping")
    cls_all = _column(features, "cls_index") if _has_column(features, "cls_index") else [0] * len(example_ids)
    if start_logits.ndim != 2 or start_logits.shape != end_logits.shape or len(start_logits) != len(example_ids):
        raise ValueError(f"start/end logits must both be (n_features={len(example_ids)}, width); got "
                         f"{start_logits.shape} and {end_logits.shape}")
    if n_best < 1 or max_answer_length < 1:
        raise ValueError(f"need n_best >= 1 and max_answer_length >= 1, got {n_best}, {max_answer_length}")
    by_example: dict[str, list[int]] = {}
    for f, eid in enumerate(example_ids):
        by_example.setdefault(eid, []).append(f)

    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    nbest: dict[str, list[dict[str, Any]]] = {}
    for qid, context in zip(_column(examples, "id"), _column(examples, "context")):
        feats = by_example.get(qid)
        if not feats:
            raise ValueError(f"example {qid!r} has no evaluation feature: features and examples do not match")
        cands: list[dict[str, Any]] = []
        null: dict[str, Any] | None = None
        for f in feats:
            offsets = offsets_all[f]
            n = len(offsets)
            if n > start_logits.shape[1]:
                raise ValueError(f"feature {f} has {n} tokens but the logits only {start_logits.shape[1]} columns")
            s, e = start_logits[f, :n], end_logits[f, :n]
            cls = int(cls_all[f])
            null_score = float(s[cls] + e[cls])
            if null is None or null_score < null["score"]:
                null = {"text": "", "score": null_score, "start_logit": float(s[cls]), "end_logit": float(e[cls]),
                        "start_char": -1, "end_char": -1, "feature": f, "null": True}
            context_mask = np.array([o is not None for o in offsets], dtype=bool)
            for i, j, score in _window_spans(s, e, context_mask, max_answer_length, n_best):
                a, b = offsets[i][0], offsets[j][1]
                cands.append({"text": context[a:b], "score": score, "start_logit": float(s[i]),
                              "end_logit": float(e[j]), "start_char": int(a), "end_char": int(b),
                              "feature": f, "null": False})
        cands.sort(key=lambda c: -c["score"])  # stable: earlier windows first on ties
        cands = cands[:n_best]
        best = cands[0] if cands else None
        odds = null["score"] - best["score"] if best is not None else math.inf
        null_odds[qid] = odds
        if version_2:
            predictions[qid] = "" if (best is None or odds > null_score_diff_threshold) else best["text"]
            cands = sorted(cands + [null], key=lambda c: -c["score"])
        else:
            predictions[qid] = best["text"] if best is not None else ""
        scores = np.array([c["score"] for c in cands])
        probs = np.exp(scores - scores.max()) if len(cands) else scores
        for c, p in zip(cands, probs / probs.sum() if len(cands) else probs):
            c["probability"] = float(p)
        nbest[qid] = cands
    return predictions, null_odds, nbest


def best_span_texts(nbest: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, str]:
    """The best non-null answer of every question ("" if none): the v2 answers before the
    no-answer threshold, which the best-threshold search of the v2.0 scoring needs."""
    return {qid: next((c["text"] for c in cands if not c["null"]), "") for qid, cands in nbest.items()}


__all__ = ["DataError", "FILES", "HUB_DATASETS", "FEATURES", "QACollator", "best_span_texts", "check_version",
           "featurize", "load_squad", "postprocess_predictions", "prepare_eval_features",
           "prepare_train_features", "read_squad_json", "squad_json_to_dataset"]
