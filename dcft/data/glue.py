"""GLUE data for the 8 paper tasks, from the Hugging Face Hub or an original GLUE folder.

Two sources, one schema. `load_glue` returns, per split, a `datasets.Dataset` with columns

- `text_a` (str): the first (or only) sentence;
- `text_b` (str): the second sentence -- **only for sentence-pair tasks**; single-sentence tasks
  (CoLA, SST-2) have no `text_b` column at all, so no code can mistake a placeholder for text;
- `label` (int64 class id in the Hub's label order, or float32 similarity score for STS-B);
- `idx` (int64): the example's position in its split (what the Hub's `idx` column is).

Sources:

- `glue_dir=None`: `datasets.load_dataset("nyu-mll/glue", <config>)` (network, or the local
  datasets cache); the Hub columns are renamed to the schema above.
- `glue_dir=/path/to/glue_data`: the original GLUE distribution, `<glue_dir>/<DIR>/train.tsv` and
  `dev.tsv` (MNLI `dev_matched.tsv`, `dev_mismatched.tsv`). Files are read as UTF-8 (a leading BOM is
  dropped) with the csv module, tab-separated and with quoting turned off (`csv.QUOTE_NONE`) for
  every task: GLUE sentences contain unbalanced `"` characters (MNLI, QQP, and also STS-B, whose real
  train file loses 37 rows under default quoting). Columns are found by header name (CoLA has no
  header: source, label, label-notes, sentence). Blank lines are skipped, as the Hub's builder did,
  so `idx` numbers the same examples. Both sources give identical examples: same text, label ids,
  order and `idx`.

Malformed input raises `DataError` (a `ValueError`) naming the file and what is wrong; a missing file
raises `FileNotFoundError` naming the path expected.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import datasets
import numpy as np

HUB_DATASET = "nyu-mll/glue"


class DataError(ValueError):
    """Task data that cannot be loaded: unreachable source, or a malformed file."""


@dataclass(frozen=True)
class GlueTask:
    """What the harness needs to know about one GLUE task."""

    name: str  # our name, e.g. "rte"
    dir_name: str  # folder in the GLUE distribution, e.g. "RTE"
    hub_name: str  # config of the Hub dataset "nyu-mll/glue"
    text_keys: tuple[str, str | None]  # Hub text columns -> text_a, text_b (None: single sentence)
    label_names: tuple[str, ...]  # class names in the Hub's label-id order; () for regression
    is_regression: bool
    eval_splits: tuple[str, ...]  # dev sets: ("validation",) or MNLI's matched / mismatched
    main_metric: str  # the metric of `dcft.metrics.glue.glue_metrics` the paper reports

    @property
    def num_labels(self) -> int:
        """Size of the model head: 1 for regression, else the number of classes."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        """True for sentence-pair tasks (the datasets then have a `text_b` column)."""
        return self.text_keys[1] is not None

    @property
    def splits(self) -> tuple[str, ...]:
        """All splits `load_glue` can load: "train" and the evaluation splits."""
        return ("train",) + self.eval_splits


def _t(name, dir_name, text_keys, label_names, main_metric="accuracy", eval_splits=("validation",)):
    return GlueTask(name=name, dir_name=dir_name, hub_name=name, text_keys=text_keys,
                    label_names=tuple(label_names), is_regression=not label_names,
                    eval_splits=tuple(eval_splits), main_metric=main_metric)


GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        _t("cola", "CoLA", ("sentence", None), ("unacceptable", "acceptable"), "matthews_correlation"),
        _t("sst2", "SST-2", ("sentence", None), ("negative", "positive")),
        _t("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
        _t("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate")),
        _t("stsb", "STS-B", ("sentence1", "sentence2"), (), "pearson"),
        _t("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
           eval_splits=("validation_matched", "validation_mismatched")),
        _t("qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment")),
        _t("rte", "RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
    )
}


def get_task(name: str) -> GlueTask:
    """The `GlueTask` of a name ("rte"; "SST-2" and "STS-B" spellings are accepted too)."""
    key = name.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; valid: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


# --- the original GLUE tsv layout ----------------------------------------------------------------
@dataclass(frozen=True)
class _TsvLayout:
    text_cols: tuple[str, str | None]  # header names (or positional names for header-less files)
    label_col: str
    label_kind: str  # "id": "0"/"1" strings; "name": class names; "score": float in [0, 5]
    columns: tuple[str, ...] | None = None  # fixed column names of a header-less file


_TSV_LAYOUTS: dict[str, _TsvLayout] = {
    "cola": _TsvLayout(("sentence", None), "label", "id",
                       columns=("source", "label", "label_notes", "sentence")),
    "sst2": _TsvLayout(("sentence", None), "label", "id"),
    "mrpc": _TsvLayout(("#1 String", "#2 String"), "Quality", "id"),
    "qqp": _TsvLayout(("question1", "question2"), "is_duplicate", "id"),
    "stsb": _TsvLayout(("sentence1", "sentence2"), "score", "score"),  # score: last GLUE column
    "mnli": _TsvLayout(("sentence1", "sentence2"), "gold_label", "name"),
    "qnli": _TsvLayout(("question", "sentence"), "label", "name"),
    "rte": _TsvLayout(("sentence1", "sentence2"), "label", "name"),
}
_SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv",
                "validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv"}
STSB_RANGE = (0.0, 5.0)  # STS-B similarity scores


def tsv_path(task: GlueTask | str, glue_dir: str | Path, split: str) -> Path:
    """The file of one split in an original GLUE folder, e.g. `<glue_dir>/RTE/dev.tsv`."""
    task = get_task(task) if isinstance(task, str) else task
    _check_splits(task, [split])
    return Path(glue_dir) / task.dir_name / _SPLIT_FILES[split]


def _features(task: GlueTask) -> datasets.Features:
    cols = {"text_a": datasets.Value("string")}
    if task.is_pair:
        cols["text_b"] = datasets.Value("string")
    cols["label"] = datasets.Value("float32" if task.is_regression else "int64")
    cols["idx"] = datasets.Value("int64")
    return datasets.Features(cols)


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}: not valid UTF-8: byte 0x{raw[e.start]:02x} at byte offset {e.start} "
                        f"(line {line}); GLUE files are UTF-8") from None
    return text.removeprefix("\ufeff")


def _parse_label(task: GlueTask, kind: str, value: str, where: str) -> int | float:
    if kind == "score":
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        lo, hi = STSB_RANGE
        if not (lo <= score <= hi):  # also rejects nan
            raise DataError(f"{where}: label {value!r} is not a similarity score in [{lo:g}, {hi:g}]")
        return score
    if kind == "id":
        valid = [str(i) for i in range(len(task.label_names))]
        if value.strip() in valid:
            return int(value)
        raise DataError(f"{where}: label {value!r} is not in the label space {{{', '.join(valid)}}} "
                        f"({', '.join(f'{i}={n}' for i, n in enumerate(task.label_names))})")
    if value in task.label_names:
        return task.label_names.index(value)
    raise DataError(f"{where}: label {value!r} is not in the label space {{{', '.join(task.label_names)}}}")


def read_glue_tsv(task: GlueTask | str, path: str | Path) -> datasets.Dataset:
    """One split file in the original GLUE tsv layout of `task`, as a Dataset in the uniform
    schema (`text_a`, [`text_b`], `label`, `idx`)."""
    task = get_task(task) if isinstance(task, str) else task
    layout = _TSV_LAYOUTS[task.name]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GLUE {task.name} file not found: expected {path}")
    reader = csv.reader(io.StringIO(_decode(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)

    wanted = [c for c in (*layout.text_cols, layout.label_col) if c is not None]
    if layout.columns is None:
        header = next((row for row in reader if row), None)
        if header is None:
            raise DataError(f"{path}: file is empty")
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing} for GLUE {task.name}; expected header "
                            f"columns {wanted}, found {header}")
        columns = tuple(header)
    else:
        columns = layout.columns
    pos = {c: columns.index(c) for c in wanted}

    out: dict[str, list] = {"text_a": [], "label": []}
    if task.is_pair:
        out["text_b"] = []
    for row in reader:
        if not row:  # blank line (the Hub's builder skipped these too)
            continue
        where = f"{path}, line {reader.line_num}"
        if len(row) != len(columns):
            hint = " (a header-less CoLA file has: source, label, label-notes, sentence)" if layout.columns else ""
            raise DataError(f"{where}: {len(row)} tab-separated fields, expected {len(columns)} "
                            f"({', '.join(columns)}){hint}")
        out["text_a"].append(row[pos[layout.text_cols[0]]])
        if task.is_pair:
            out["text_b"].append(row[pos[layout.text_cols[1]]])
        out["label"].append(_parse_label(task, layout.label_kind, row[pos[layout.label_col]], where))
    if not out["label"]:
        raise DataError(f"{path}: no examples (only a header)")
    out["idx"] = list(range(len(out["label"])))
    features = _features(task)
    return datasets.Dataset.from_dict({k: out[k] for k in features}, features=features)


# --- loading -------------------------------------------------------------------------------------
def _check_splits(task: GlueTask, splits: Iterable[str]) -> None:
    bad = [s for s in splits if s not in task.splits]
    if bad:
        raise ValueError(f"GLUE {task.name} has no split(s) {bad}; valid: {', '.join(task.splits)}")


def _from_hub_split(task: GlueTask, ds: datasets.Dataset, split: str) -> datasets.Dataset:
    a, b = task.text_keys
    rename = {a: "text_a", "label": "label", "idx": "idx"}
    if b is not None:
        rename[b] = "text_b"
    missing = [c for c in rename if c not in ds.column_names]
    if missing:
        raise DataError(f"Hub dataset {HUB_DATASET}/{task.hub_name} split {split!r}: missing column(s) "
                        f"{missing}; found {ds.column_names}")
    label_feature = ds.features["label"]
    if isinstance(label_feature, datasets.ClassLabel) and tuple(label_feature.names) != task.label_names:
        raise DataError(f"Hub dataset {HUB_DATASET}/{task.hub_name}: label names {label_feature.names} "
                        f"differ from the expected order {list(task.label_names)}")
    ds = ds.select_columns(list(rename)).rename_columns({k: v for k, v in rename.items() if k != v})
    features = _features(task)
    return ds.select_columns(list(features)).cast(features, keep_in_memory=True)


def _load_hub(task: GlueTask, splits: list[str]) -> dict[str, datasets.Dataset]:
    try:
        dd = datasets.load_dataset(HUB_DATASET, task.hub_name)
    except Exception as e:  # connection, offline mode, missing cache, ...: all the same advice
        raise DataError(
            f"could not load GLUE {task.name} from the Hugging Face Hub ({HUB_DATASET}, config "
            f"{task.hub_name!r}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            f"Either set data.glue_dir=/path/to/glue_data containing {task.dir_name}/train.tsv "
            f"(the original GLUE distribution), or make the Hub reachable."
        ) from e
    absent = [s for s in splits if s not in dd]
    if absent:
        raise DataError(f"Hub dataset {HUB_DATASET}/{task.hub_name} has no split(s) {absent}; "
                        f"found {list(dd)}")
    return {s: _from_hub_split(task, dd[s], s) for s in splits}


HUB_PROBE_TIMEOUT_S = 3.0  # how long `hub_offline` waits for the Hub to answer


def hub_offline() -> str | None:
    """Why the Hugging Face Hub cannot be used now, or None when it answers: offline mode set
    (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), or no answer from its endpoint within
    `HUB_PROBE_TIMEOUT_S` seconds (a HEAD request through the environment's proxies; probed once per
    process and endpoint, so the jobs of a sweep do not each wait)."""
    import os

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var}={os.environ[var]}"
    return _probe_hub(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@functools.lru_cache(maxsize=None)
def _probe_hub(endpoint: str) -> str | None:
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as e:  # DNS, refused, timeout, proxy: all mean "not reachable now"
        if getattr(e, "code", None) is not None:  # an HTTP answer (e.g. 405) is an answer
            return None
        return f"{endpoint} unreachable ({type(e).__name__})"
    return None


def in_hub_cache(dataset: str, config: str | None) -> bool:
    """Whether the local Hugging Face caches hold `dataset` (its `datasets` cache folder for `config`,
    or its files in the Hub cache): then an offline `load_dataset` can still find it."""
    from huggingface_hub import constants

    namespace_name = dataset.replace("/", "___")
    prepared = Path(datasets.config.HF_DATASETS_CACHE) / namespace_name
    if config:
        prepared = prepared / config
    return prepared.is_dir() or (Path(constants.HF_HUB_CACHE) / f"datasets--{dataset.replace('/', '--')}").is_dir()


def require_hub_or_cache(dataset: str, config: str | None, key: str, expected: str) -> None:
    """Before any download attempt: without local files, the Hub must answer or the local cache hold
    the dataset; else one `DataError` line naming `key` (e.g. data.glue_dir) and what it must hold."""
    reason = hub_offline()
    if reason is not None and not in_hub_cache(dataset, config):
        raise DataError(f"no local data and the Hugging Face Hub is offline ({reason}), with no cached copy of "
                        f"{dataset}{'/' + config if config else ''}: pass {key}=DIR, {expected}")


def load_glue(task: str | GlueTask, glue_dir: str | Path | None = None,
              splits: str | Iterable[str] | None = None) -> dict[str, datasets.Dataset]:
    """The requested splits (default: "train" and the task's eval splits) of one GLUE task, as
    {split name: Dataset with text_a, [text_b], label, idx}; from `glue_dir` (original GLUE
    layout) if given (not None / ""), else from the Hub (set HF_DATASETS_OFFLINE=1 to fail fast
    instead of retrying when there is no network)."""
    task = get_task(task) if isinstance(task, str) else task
    split_list = list(task.splits if splits is None else [splits] if isinstance(splits, str) else splits)
    _check_splits(task, split_list)
    if glue_dir is None or str(glue_dir) == "":
        return _load_hub(task, split_list)
    root = Path(glue_dir).expanduser()
    if not (root / task.dir_name).is_dir():
        raise FileNotFoundError(
            f"GLUE folder {root / task.dir_name} not found: data.glue_dir={str(glue_dir)!r} must contain "
            f"{task.dir_name}/{_SPLIT_FILES['train']} (the original GLUE distribution layout)")
    return {s: read_glue_tsv(task, tsv_path(task, root, s)) for s in split_list}


def subsample(ds: datasets.Dataset, limit: int | None, seed: int = 0) -> datasets.Dataset:
    """A deterministic random subset of `limit` examples, kept in their original order (the whole
    dataset if `limit` is None or not smaller than it).

    The subset is the first `limit` indices of a permutation drawn with `numpy.random.default_rng(seed)`,
    sorted: a seeded draw rather than the first rows (GLUE files are sorted by source/genre, so the
    first rows are not representative); the same seed gives nested subsets as `limit` grows."""
    if limit is None:
        return ds
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    n = len(ds)
    if limit >= n:
        return ds
    picked = np.sort(np.random.default_rng(seed).permutation(n)[:limit])
    return ds.select(picked.tolist(), keep_in_memory=True)


def holdout_count(n: int, fraction: float) -> int:
    """How many of `n` training examples `split_holdout` sets aside: `round(fraction x n)`, at least one."""
    return max(1, round(fraction * n))


def split_holdout(ds: datasets.Dataset, fraction: float, seed: int = 0) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(rest, held out): a seeded random `fraction` of `ds` set aside, both parts in their original order.

    For selecting hyperparameters on data the model never trained on and that is not the dev set
    (`data.holdout=FRACTION`). The held-out rows are the first `round(fraction x n)` (at least
    one) indices of a permutation drawn with `numpy.random.default_rng(seed)`; the same seed always holds
    out the same rows, whatever the learning rate or method."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"data.holdout={fraction!r}: must be a fraction of the training set in (0, 1), "
                         f"or 0 for none")
    n = len(ds)
    k = holdout_count(n, fraction)
    if k >= n:
        raise ValueError(f"data.holdout={fraction!r} would hold out all {n} training examples")
    perm = np.random.default_rng(seed).permutation(n)
    held, rest = np.sort(perm[:k]), np.sort(perm[k:])
    return ds.select(rest.tolist(), keep_in_memory=True), ds.select(held.tolist(), keep_in_memory=True)


_TOKENIZER_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def tokenize_glue(ds: datasets.Dataset, tokenizer: Any, task: GlueTask | str, max_len: int) -> datasets.Dataset:
    """Model features of a uniform-schema dataset: `input_ids`, `attention_mask`, `token_type_ids`
    (if the tokenizer returns them) and `labels` (int64, or float32 for regression); truncated to
    `max_len` tokens, not padded (pad per batch, e.g. `DataCollatorWithPadding`). Row order is kept."""
    task = get_task(task) if isinstance(task, str) else task
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    need = ["text_a", "label"] + (["text_b"] if task.is_pair else [])
    missing = [c for c in need if c not in ds.column_names]
    if missing:
        raise ValueError(f"dataset lacks column(s) {missing} of the GLUE {task.name} schema; "
                         f"found {ds.column_names} (load it with load_glue)")
    label_dtype = np.float32 if task.is_regression else np.int64

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        texts = (batch["text_a"], batch["text_b"]) if task.is_pair else (batch["text_a"],)
        enc = tokenizer(*texts, truncation=True, max_length=max_len, padding=False)
        out = {k: enc[k] for k in _TOKENIZER_KEYS if k in enc}
        out["labels"] = np.asarray(batch["label"], dtype=label_dtype)
        return out

    return ds.map(encode, batched=True, remove_columns=ds.column_names, keep_in_memory=True,
                  load_from_cache_file=False, desc=f"tokenize {task.name}")
