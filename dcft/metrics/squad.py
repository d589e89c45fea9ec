"""SQuAD v1.1 and v2.0 scores, as the official evaluation scripts compute them (offline).

- `normalize_answer`: lower-case, drop punctuation (`string.punctuation`), drop the articles
  a/an/the (as whole words), collapse whitespace -- in that order, as both official scripts.
- `exact_match` and token `f1` of one prediction against one gold answer. `f1` follows the v2.0
  script: if either side normalises to no tokens, F1 = EM (1 if both are empty, else 0); the v1.1
  script instead gives 0 whenever no token is shared (`empty_match=False`), which only differs when
  both sides normalise to empty.
- `squad_v1_scores`: EM and F1 x100, maximum over the gold answers, averaged over all questions
  (a question without a prediction scores 0 and still counts, as in evaluate-v1.1.py).
- `squad_v2_scores`: evaluate-v2.0.py: gold answers that normalise to empty are dropped, a question
  with none is unanswerable and its gold is [""]; the no-answer threshold (`na_probs[id] > thresh`
  means "no answer") is applied before averaging; HasAns / NoAns splits; with `na_probs`, the best
  threshold search (`best_exact`, `best_f1` and their thresholds).

`dataset` is a list (or `datasets.Dataset`) of examples in the Hugging Face Hub schema:
`{"id": str, "answers": {"text": [...], "answer_start": [...]}}` (other keys are ignored; answers in
the official form, a list of `{"text", "answer_start"}` dicts, are accepted too).

Re-score saved predictions (prints JSON like the official scripts):

    python -m dcft.metrics.squad --version v2 --data dev-v2.0.json --predictions predictions.json \
        [--na-probs null_odds.json] [--na-prob-thresh 1.0]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import string
import sys
from typing import Any, Iterable, Mapping

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, remove punctuation, remove articles (a, an, the), collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str, *, empty_match: bool = True) -> float:
    """Token F1 of the normalised strings (bag of tokens). With `empty_match` (v2.0 rule), an
    empty side gives F1 = EM; without it (v1.1 script) no shared token gives 0."""
    pred, ref = _tokens(prediction), _tokens(gold)
    if empty_match and (not pred or not ref):
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _gold_texts(example: Mapping[str, Any]) -> list[str]:
    answers = example["answers"]
    if isinstance(answers, Mapping):
        return list(answers["text"])
    return [a["text"] for a in answers]  # official form: list of {"text", "answer_start"}


def squad_v1_scores(predictions: Mapping[str, str], dataset: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """evaluate-v1.1.py: {"exact_match", "f1"} in percent, max over gold answers; a question
    without prediction scores 0 (and a warning names how many)."""
    em_sum = f1_sum = 0.0
    total = 0
    missing = []
    for ex in dataset:
        total += 1
        qid = ex["id"]
        if qid not in predictions:
            missing.append(qid)
            continue
        golds = _gold_texts(ex)
        pred = predictions[qid]
        em_sum += max(exact_match(pred, g) for g in golds)
        f1_sum += max(f1(pred, g, empty_match=False) for g in golds)
    if total == 0:
        raise ValueError("squad_v1_scores: the dataset has no questions")
    if missing:
        print(f"squad_v1_scores: {len(missing)} question(s) without prediction scored 0 "
              f"(first: {missing[0]!r})", file=sys.stderr)
    return {"exact_match": 100.0 * em_sum / total, "f1": 100.0 * f1_sum / total}


def _raw_v2(predictions: Mapping[str, str], dataset: Iterable[Mapping[str, Any]]):
    exact, f1s, has_ans = {}, {}, {}
    missing = []
    for ex in dataset:
        qid = ex["id"]
        texts = _gold_texts(ex)
        has_ans[qid] = bool(texts)  # the official script: bool(qa["answers"])
        golds = [t for t in texts if normalize_answer(t)] or [""]
        if qid not in predictions:
            missing.append(qid)
            continue
        pred = predictions[qid]
        exact[qid] = max(exact_match(pred, g) for g in golds)
        f1s[qid] = max(f1(pred, g) for g in golds)
    if not has_ans:
        raise ValueError("squad_v2_scores: the dataset has no questions")
    if missing:  # evaluate-v2.0.py fails on these (KeyError in the HasAns / NoAns averages)
        raise ValueError(f"squad_v2_scores: {len(missing)} question(s) have no prediction "
                         f"(first: {missing[0]!r}); SQuAD v2.0 scoring needs one per question "
                         f"(\"\" for no answer)")
    return exact, f1s, has_ans


def _apply_threshold(scores: dict[str, float], na_probs: Mapping[str, float], has_ans: dict[str, bool],
                     thresh: float) -> dict[str, float]:
    return {qid: (float(not has_ans[qid]) if na_probs[qid] > thresh else s) for qid, s in scores.items()}


def _mean(scores: dict[str, float], qids: list[str]) -> float:
    return 100.0 * sum(scores[q] for q in qids) / len(qids)


def _best_threshold(predictions: Mapping[str, str], scores: dict[str, float], na_probs: Mapping[str, float],
                    has_ans: dict[str, bool]) -> tuple[float, float]:
    """evaluate-v2.0.py `find_best_thresh`: start from "no answer everywhere" (score = number of
    unanswerable questions), then answer questions in increasing `na_probs` order; the threshold
    is the `na_probs` value after which the running score was highest (0.0 if never improved)."""
    cur = best = float(sum(1 for q in has_ans if not has_ans[q]))
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda q: na_probs[q]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            cur += scores[qid]
        else:
            cur += -1.0 if predictions[qid] else 0.0
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    return 100.0 * best / len(scores), float(best_thresh)


def squad_v2_scores(predictions: Mapping[str, str], dataset: Iterable[Mapping[str, Any]],
                    na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict[str, float]:
    """evaluate-v2.0.py: `exact`, `f1`, `total` after the no-answer threshold (a question with
    `na_probs[id] > na_prob_thresh` counts as answered "no answer"), `HasAns_*` / `NoAns_*` (only
    when such questions exist, as the official script), and with `na_probs` given, `best_exact`,
    `best_exact_thresh`, `best_f1`, `best_f1_thresh` (the threshold search over `na_probs`, which
    uses `predictions` as the answers of the questions it keeps answered)."""
    exact_raw, f1_raw, has_ans = _raw_v2(predictions, dataset)
    given = na_probs is not None
    probs = dict(na_probs) if given else {q: 0.0 for q in predictions}
    lacking = [q for q in exact_raw if q not in probs]
    if lacking:
        raise ValueError(f"squad_v2_scores: na_probs lacks {len(lacking)} question(s) (first: {lacking[0]!r})")
    exact = _apply_threshold(exact_raw, probs, has_ans, na_prob_thresh)
    f1s = _apply_threshold(f1_raw, probs, has_ans, na_prob_thresh)
    qids = list(exact)
    out: dict[str, float] = {"exact": _mean(exact, qids), "f1": _mean(f1s, qids), "total": len(qids)}
    for prefix, keep in (("HasAns", True), ("NoAns", False)):
        sub = [q for q in has_ans if has_ans[q] == keep]
        if sub:
            out.update({f"{prefix}_exact": _mean(exact, sub), f"{prefix}_f1": _mean(f1s, sub),
                        f"{prefix}_total": len(sub)})
    if given:
        # iterated in na_probs order (ties are broken as the official script breaks them);
        # ids that are not questions of the dataset are skipped
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(predictions, exact_raw, probs, has_ans)
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(predictions, f1_raw, probs, has_ans)
    return out


# --- command line ----------------------------------------------------------------------------------
def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"{what} file {path} is not valid JSON: {e}") from None


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Score a predictions file ({id: answer}) against an official SQuAD JSON file; print JSON."""
    p = argparse.ArgumentParser(prog="python -m dcft.metrics.squad", description=main.__doc__)
    p.add_argument("--version", choices=("v1", "v2"), required=True, help="SQuAD v1.1 or v2.0 scoring")
    p.add_argument("--data", required=True, help="official SQuAD JSON, e.g. dev-v2.0.json")
    p.add_argument("--predictions", required=True, help="JSON {question id: predicted answer}")
    p.add_argument("--na-probs", default=None, help="v2: JSON {question id: no-answer score} (null_odds.json)")
    p.add_argument("--na-prob-thresh", type=float, default=1.0,
                   help="v2: predict no answer when the no-answer score exceeds this (default 1.0)")
    args = p.parse_args(argv)

    from dcft.data.squad import DataError, read_squad_json  # the official-format reader (validates)

    try:
        dataset = read_squad_json(args.data)
    except DataError as e:
        raise SystemExit(f"error: {e}") from None
    predictions = _read_json(args.predictions, "predictions")
    if not isinstance(predictions, dict):
        raise SystemExit(f"predictions file {args.predictions} must hold a JSON object {{id: answer}}")
    if args.version == "v1" and args.na_probs:
        raise SystemExit("--na-probs is for --version v2 only")
    try:
        if args.version == "v1":
            scores = squad_v1_scores(predictions, dataset)
        else:
            na_probs = _read_json(args.na_probs, "na-probs") if args.na_probs else None
            scores = squad_v2_scores(predictions, dataset, na_probs, args.na_prob_thresh)
    except ValueError as e:  # missing predictions / na-probs
        raise SystemExit(f"error: {e}") from None
    print(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    main()
