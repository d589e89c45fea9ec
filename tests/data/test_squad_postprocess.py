"""SQuAD windowing (train labels, eval offsets) and post-processing of hand-built logits.

The byte tokenizer makes positions easy to reason about: every ASCII character is one token, so a
feature is [CLS] question [SEP] context-window [SEP] with one token per character.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dcft.data.squad import (best_span_texts, postprocess_predictions, prepare_eval_features,
                             prepare_train_features)
from dcft.harness.models import byte_tokenizer

TOK = byte_tokenizer()
Q = "Q?"  # 2 tokens: a feature is [CLS] Q ? [SEP] <window> [SEP]
CONTEXT = "".join(chr(ord("a") + i % 26) for i in range(60))  # 60 one-token characters: "abc...zab..."
MAX_LEN = 25  # 1 + 2 + 1 + 20 + 1: windows of 20 context tokens
STRIDE = 8  # consecutive windows share 8 tokens, so a window starts 12 characters after the previous


def batch(context=CONTEXT, question=Q, answer=None, qid="q"):
    text, start = (answer if answer is not None else ([], []))
    return {"id": [qid], "title": [""], "context": [context], "question": [question],
            "answers": [{"text": list(text), "answer_start": list(start)}]}


def eval_feats(context=CONTEXT, question=Q, max_len=MAX_LEN, stride=STRIDE):
    return prepare_eval_features(batch(context, question), TOK, max_len, stride)


def tok_at(feats, f, char):
    """The token of feature f whose character span starts at `char`."""
    return next(k for k, o in enumerate(feats["offset_mapping"][f]) if o is not None and o[0] == char)


def logits_like(feats, fill=0.0, width=None):
    width = width or max(len(ids) for ids in feats["input_ids"])
    return np.full((len(feats["input_ids"]), width), fill), np.full((len(feats["input_ids"]), width), fill)


def examples(context=CONTEXT, qid="q"):
    return [{"id": qid, "context": context}]


# --- windows -----------------------------------------------------------------------------------------
def test_windows_overlap_by_doc_stride():
    feats = eval_feats()
    # windows start at characters 0, 12, 24, 36, 48 (20 tokens each, 8 shared; the last is shorter)
    spans = [[o for o in offs if o is not None] for offs in feats["offset_mapping"]]
    assert [s[0][0] for s in spans] == [0, 12, 24, 36, 48]
    assert [len(s) for s in spans] == [20, 20, 20, 20, 12]
    for a, b in zip(spans, spans[1:]):
        assert a[-STRIDE:] == b[:STRIDE]  # exactly doc_stride tokens shared
    # question and special tokens have no offsets; CLS first
    offs0 = feats["offset_mapping"][0]
    assert offs0[:4] == [None] * 4 and offs0[-1] is None
    assert feats["cls_index"] == [0] * 5 and feats["example_id"] == ["q"] * 5
    assert all(len(ids) <= MAX_LEN for ids in feats["input_ids"])


def test_train_labels_in_overlap_and_outside():
    start = 14  # "opqr" at chars 14-17: inside windows 0 ([0, 20)) and 1 ([12, 32)) only
    answer = (["opqr"], [start])
    assert CONTEXT[start:start + 4] == "opqr"
    out = prepare_train_features(batch(answer=answer), TOK, MAX_LEN, STRIDE)
    labels = list(zip(out["start_positions"], out["end_positions"]))
    assert labels[2:] == [(0, 0)] * 3  # not in the window: CLS
    for f in (0, 1):
        s, e = labels[f]
        assert TOK.decode(out["input_ids"][f][s:e + 1]) == "opqr"
    # an answer cut by a window edge (chars 18-21 in window 0 = [0, 20)) is CLS there
    cut = prepare_train_features(batch(answer=(["stuv"], [18])), TOK, MAX_LEN, STRIDE)
    assert (cut["start_positions"][0], cut["end_positions"][0]) == (0, 0)
    s, e = cut["start_positions"][1], cut["end_positions"][1]
    assert TOK.decode(cut["input_ids"][1][s:e + 1]) == "stuv"
    # unanswerable (v2): CLS everywhere
    none = prepare_train_features(batch(), TOK, MAX_LEN, STRIDE)
    assert set(none["start_positions"]) == set(none["end_positions"]) == {0}


def test_train_labels_multibyte_and_roundtrip():
    context = "Le café de Zoë est ouvert."
    start = context.index("café")
    out = prepare_train_features(batch(context, "Où?", (["café"], [start])), TOK, 64, 16)
    s, e = out["start_positions"][0], out["end_positions"][0]
    assert TOK.decode(out["input_ids"][0][s:e + 1]) == "café"  # both bytes of é included
    # logits peaked at the training labels decode back to the answer
    feats = prepare_eval_features(batch(context, "Où?"), TOK, 64, 16)
    st, en = logits_like(feats)
    st[0, s] = en[0, e] = 10.0
    preds, _, _ = postprocess_predictions(examples(context), feats, st, en, version_2=False)
    assert preds == {"q": "café"}


def test_left_padding_tokenizer_puts_context_first():
    tok = byte_tokenizer()
    tok.padding_side = "left"
    context = "The dog barked."
    feats = prepare_eval_features(batch(context, "Who?"), tok, 64, 16)
    offs = feats["offset_mapping"][0]
    assert offs[1] == [0, 1] and offs[0] is None  # [CLS] then the context
    out = prepare_train_features(batch(context, "Who?", (["dog"], [4])), tok, 64, 16)
    s, e = out["start_positions"][0], out["end_positions"][0]
    assert tok.decode(out["input_ids"][0][s:e + 1]) == "dog"


def test_question_too_long_is_a_clear_error():
    with pytest.raises(ValueError, match="raise max_len or lower doc_stride"):
        eval_feats(question="A much longer question?", max_len=25, stride=8)


# --- post-processing --------------------------------------------------------------------------------
def test_recovers_a_known_span_and_ignores_question_tokens():
    context = "The quick brown fox jumps."
    feats = eval_feats(context, max_len=64)
    assert len(feats["input_ids"]) == 1
    st, en = logits_like(feats)
    st[0, tok_at(feats, 0, 10)] = 5.0  # "brown fox" = chars 10..18
    en[0, tok_at(feats, 0, 18)] = 5.0
    st[0, 1:3] = en[0, 1:3] = 50.0  # question tokens: never part of an answer
    st[0, -1] = en[0, -1] = 50.0  # final [SEP]: neither
    st[0, 0] = en[0, 0] = 50.0  # CLS: ignored by v1
    preds, odds, nbest = postprocess_predictions(examples(context), feats, st, en, version_2=False)
    assert preds == {"q": "brown fox"}
    assert odds["q"] == pytest.approx(100.0 - 10.0)
    top = nbest["q"][0]
    assert (top["start_char"], top["end_char"], top["score"]) == (10, 19, 10.0)
    assert all(not c["null"] and c["text"] == context[c["start_char"]:c["end_char"]] for c in nbest["q"])
    assert len(nbest["q"]) == 20 and sum(c["probability"] for c in nbest["q"]) == pytest.approx(1.0)


def test_max_answer_length_and_start_after_end():
    context = "abcdefghijklmnopqrst"
    feats = eval_feats(context, max_len=64)
    st, en = logits_like(feats)
    st[0, tok_at(feats, 0, 2)] = 9.0  # a 15-token span "cdefghijklmnopq" would score 18 ...
    en[0, tok_at(feats, 0, 16)] = 9.0
    en[0, tok_at(feats, 0, 1)] = 8.5  # ... an end before the start is never valid
    st[0, tok_at(feats, 0, 5)] = 1.0
    preds, _, _ = postprocess_predictions(examples(context), feats, st, en, version_2=False, max_answer_length=10)
    # spans of <= 10 tokens: start 2 + best end in [2, 11] (all 0) = 9 beats start 5 + ... = 1
    assert preds == {"q": "c"}
    preds, _, _ = postprocess_predictions(examples(context), feats, st, en, version_2=False, max_answer_length=15)
    assert preds == {"q": "cdefghijklmnopq"}


def test_answer_in_overlap_found_in_either_window():
    feats = eval_feats()
    for f in (0, 1):  # "opqr" (chars 14-17) lies in windows 0 and 1
        st, en = logits_like(feats)
        st[f, tok_at(feats, f, 14)] = en[f, tok_at(feats, f, 17)] = 4.0
        preds, _, nbest = postprocess_predictions(examples(), feats, st, en, version_2=False)
        assert preds == {"q": "opqr"} and nbest["q"][0]["feature"] == f


def test_a_span_never_crosses_windows():
    feats = eval_feats()
    st, en = logits_like(feats)
    st[0, tok_at(feats, 0, 2)] = 10.0  # a start only window 0 holds (char 2) ...
    en[2, tok_at(feats, 2, 30)] = 10.0  # ... and an end only window 2 holds (char 30)
    st[3, tok_at(feats, 3, 40)] = 3.0  # a modest span inside window 3: chars 40..41
    en[3, tok_at(feats, 3, 41)] = 3.0
    preds, _, nbest = postprocess_predictions(examples(), feats, st, en, version_2=False, max_answer_length=30)
    windows = [[o for o in offs if o is not None] for offs in feats["offset_mapping"]]
    for c in nbest["q"]:  # every candidate lies inside the window it came from
        w = windows[c["feature"]]
        assert w[0][0] <= c["start_char"] < c["end_char"] <= w[-1][1]
    top = nbest["q"][0]  # half-spans (10 + 0) beat 3 + 3; 10 + 10 would cross windows 0 and 2
    assert top["score"] == 10.0
    assert (top["feature"], top["start_char"]) == (0, 2) or (top["feature"], top["end_char"]) == (2, 31)
    assert preds["q"] == top["text"] != CONTEXT[2:31]


def test_v2_null_answer_when_null_score_wins():
    context = "The quick brown fox jumps."
    feats = eval_feats(context, max_len=64)
    st, en = logits_like(feats)
    st[0, tok_at(feats, 0, 10)] = en[0, tok_at(feats, 0, 18)] = 5.0  # span score 10
    st[0, 0] = en[0, 0] = 10.0  # null score 20: odds = 20 - 10 = 10
    preds, odds, nbest = postprocess_predictions(examples(context), feats, st, en, version_2=True)
    assert preds == {"q": ""} and odds == {"q": 10.0}
    assert nbest["q"][0]["null"] and best_span_texts(nbest) == {"q": "brown fox"}
    preds, _, _ = postprocess_predictions(examples(context), feats, st, en, version_2=True,
                                          null_score_diff_threshold=10.0)  # odds must exceed it
    assert preds == {"q": "brown fox"}
    v1, _, nb1 = postprocess_predictions(examples(context), feats, st, en, version_2=False)
    assert v1 == {"q": "brown fox"} and not any(c["null"] for c in nb1["q"])


def test_v2_null_score_is_the_minimum_over_windows():
    feats = eval_feats()
    st, en = logits_like(feats)
    st[:, 0] = en[:, 0] = 10.0  # null 20 in windows 0, 2, 3, 4 ...
    st[1, 0] = en[1, 0] = 2.0  # ... and 4 in window 1: the null score is 4
    st[0, tok_at(feats, 0, 3)] = en[0, tok_at(feats, 0, 4)] = 3.0  # best span 6 ("de")
    preds, odds, _ = postprocess_predictions(examples(), feats, st, en, version_2=True)
    assert preds == {"q": "de"} and odds["q"] == pytest.approx(4.0 - 6.0)


def test_ragged_logits_and_several_examples():
    """Wider logits (batches padded to other widths, filled with -1e4) give the same answers; the
    windows of each example are found by example_id."""
    ctx_a, ctx_b = "Red apples grow here.", "Blue sky."
    fa = prepare_eval_features({**batch(ctx_a, qid="a")}, TOK, 64, 16)
    fb = prepare_eval_features({**batch(ctx_b, qid="b")}, TOK, 64, 16)
    feats = {k: fa[k] + fb[k] for k in fa}
    width = max(len(x) for x in feats["input_ids"]) + 7
    st = np.full((2, width), -1e4)
    en = np.full((2, width), -1e4)
    for f, ids in enumerate(feats["input_ids"]):
        st[f, :len(ids)] = en[f, :len(ids)] = 0.0
    st[0, tok_at(feats, 0, 4)] = en[0, tok_at(feats, 0, 9)] = 3.0  # "apples"
    st[1, tok_at(feats, 1, 0)] = en[1, tok_at(feats, 1, 3)] = 3.0  # "Blue"
    st[:, -3:] = en[:, -3:] = 99.0  # filler beyond the windows is never read
    preds, odds, _ = postprocess_predictions(
        [{"id": "a", "context": ctx_a}, {"id": "b", "context": ctx_b}], feats, st, en, version_2=True)
    assert preds == {"a": "apples", "b": "Blue"}
    assert all(math.isfinite(v) for v in odds.values())


def test_shape_mismatch_is_an_error():
    feats = eval_feats()
    st, en = logits_like(feats)
    with pytest.raises(ValueError, match="n_features=5"):
        postprocess_predictions(examples(), feats, st[:3], en[:3], version_2=False)
