"""SQuAD v1.1 / v2.0 scoring against hand-computed values (the official scripts' rules)."""

from __future__ import annotations

import json

import pytest

from dcft.metrics.squad import (exact_match, f1, main, normalize_answer, squad_v1_scores,
                                squad_v2_scores)


def ex(qid, *golds):
    return {"id": qid, "answers": {"text": list(golds), "answer_start": [0] * len(golds)}}


@pytest.mark.parametrize("text, expected", [
    ("The Cat!", "cat"),                      # lower, punctuation, article
    ("  An   apple, a day. ", "apple day"),   # articles a/an, whitespace collapsed
    ("theater", "theater"),                   # "the" only as a whole word
    ("A.B.C.", "abc"),                        # punctuation goes before articles: "abc", not "a b c"
    ("the-end", "theend"),                    # ... so "the-end" -> "theend" keeps its "the"
    ("Über  Café", "über café"),              # non-ASCII letters kept, lower-cased
    ("The", ""),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match():
    assert exact_match("The cat.", "cat") == 1.0
    assert exact_match("cats", "cat") == 0.0


def test_f1_token_overlap():
    # pred [big, red, dog], gold [red, dog, barks]: 2 shared, P = R = 2/3 -> F1 = 2/3
    assert f1("the big red dog", "red dog barks") == pytest.approx(2 / 3)
    # bag of tokens: [x, x, y] vs [x, y, y] share min counts x:1, y:1 = 2 -> P = R = 2/3
    assert f1("x x y", "x y y") == pytest.approx(2 / 3)
    # [x, x] vs [x]: 1 shared, P = 1/2, R = 1 -> F1 = 2 * 0.5 / 1.5 = 2/3
    assert f1("x x", "x") == pytest.approx(2 / 3)
    assert f1("cat", "dog") == 0.0


def test_f1_empty_rule():
    # v2: an empty side gives F1 = EM; "the" normalises to empty
    assert f1("", "") == 1.0
    assert f1("the", "") == 1.0
    assert f1("cat", "") == 0.0
    assert f1("", "cat") == 0.0
    # v1 script: no shared token -> 0, even when both are empty
    assert f1("", "", empty_match=False) == 0.0


def test_v1_max_over_gold_and_missing():
    data = [
        ex("q1", "Denver Broncos", "Denver Broncos", "Broncos"),  # "the Broncos" == "Broncos": EM 1, F1 1
        ex("q2", "Saint Bernadette Soubirous"),                   # "Bernadette": EM 0, P 1, R 1/3 -> F1 0.5
        ex("q3", "1990"),                                         # no prediction: 0, still counted
    ]
    scores = squad_v1_scores({"q1": "the Broncos", "q2": "Bernadette"}, data)
    assert scores == pytest.approx({"exact_match": 100 / 3, "f1": 50.0})  # (1+0+0)/3, (1+0.5+0)/3


def test_v1_official_answer_form():
    data = [{"id": "q", "answers": [{"text": "Paris", "answer_start": 3}, {"text": "in Paris", "answer_start": 0}]}]
    assert squad_v1_scores({"q": "in paris"}, data) == {"exact_match": 100.0, "f1": 100.0}


V2_DATA = [
    ex("a", "Paris", "the city of Paris"),  # answerable
    ex("b", "in 1905"),                     # answerable
    ex("c"),                                # unanswerable
    ex("d"),                                # unanswerable
]
V2_PREDS = {
    "a": "Paris",          # EM 1, F1 1
    "b": "1905 and 1906",  # [1905, and, 1906] vs [in, 1905]: 1 shared, P 1/3, R 1/2 -> F1 0.4; EM 0
    "c": "",               # gold [""]: EM 1, F1 1
    "d": "blue",           # gold [""]: EM 0, F1 0
}


def test_v2_without_na_probs():
    s = squad_v2_scores(V2_PREDS, V2_DATA)
    assert s == pytest.approx({
        "exact": 50.0, "f1": 60.0, "total": 4,              # (1+0+1+0)/4, (1+0.4+1+0)/4
        "HasAns_exact": 50.0, "HasAns_f1": 70.0, "HasAns_total": 2,  # a, b: (1+0)/2, (1+0.4)/2
        "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2,     # c, d
    })
    assert list(s)[:3] == ["exact", "f1", "total"]  # no best_* without na_probs (official script)


def test_v2_threshold_and_best_threshold():
    na = {"a": -2.0, "b": 0.5, "c": 3.0, "d": 1.5}
    s = squad_v2_scores(V2_PREDS, V2_DATA, na_probs=na, na_prob_thresh=1.0)
    # na > 1.0 -> "no answer": c (unanswerable -> 1) and d (unanswerable -> 1 instead of 0)
    # exact a1 b0 c1 d1 = 75; f1 1 + 0.4 + 1 + 1 = 3.4/4 = 85
    # best threshold search (start: no answer everywhere = 2 unanswerable right), in na order a, b, d, c:
    #   exact: a +1 -> 3 (best, thresh -2.0); b +0 -> 3; d pred "blue" -1 -> 2; c pred "" +0 -> 2
    #   f1:    a +1 -> 3 (best, -2.0); b +0.4 -> 3.4 (best, 0.5); d -1 -> 2.4; c +0 -> 2.4
    assert s == pytest.approx({
        "exact": 75.0, "f1": 85.0, "total": 4,
        "HasAns_exact": 50.0, "HasAns_f1": 70.0, "HasAns_total": 2,
        "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 2,
        "best_exact": 75.0, "best_exact_thresh": -2.0,
        "best_f1": 85.0, "best_f1_thresh": 0.5,
    })
    # a threshold below every score: all "no answer" -> only c, d right: 50 / 50
    low = squad_v2_scores(V2_PREDS, V2_DATA, na_probs=na, na_prob_thresh=-5.0)
    assert (low["exact"], low["f1"], low["HasAns_f1"], low["NoAns_f1"]) == (50.0, 50.0, 0.0, 100.0)


def test_v2_best_threshold_never_improves():
    # only unanswerable questions, both answered wrongly: the start (all "no answer") = 2/2 is best,
    # its threshold 0.0 by the official convention
    s = squad_v2_scores({"c": "x", "d": "y"}, [ex("c"), ex("d")], na_probs={"c": 0.2, "d": 0.1})
    assert (s["best_exact"], s["best_exact_thresh"], s["best_f1"], s["best_f1_thresh"]) == (100.0, 0.0, 100.0, 0.0)
    assert "HasAns_total" not in s and s["NoAns_total"] == 2


def test_v2_gold_normalising_to_empty_is_dropped():
    # gold "The" normalises to "": the gold list becomes [""], yet the question counts as answerable
    s = squad_v2_scores({"e": ""}, [ex("e", "The")])
    assert (s["exact"], s["f1"], s["HasAns_total"]) == (100.0, 100.0, 1)


def test_v2_missing_prediction_or_na_prob_is_an_error():
    with pytest.raises(ValueError, match="no prediction"):
        squad_v2_scores({"a": "Paris"}, V2_DATA)
    with pytest.raises(ValueError, match="na_probs lacks"):
        squad_v2_scores(V2_PREDS, V2_DATA, na_probs={"a": 0.0})


def _official_json(path):
    data = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": "Paris in 1905 was blue.", "qas": [
            {"id": "a", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 0}],
             "is_impossible": False},
            {"id": "b", "question": "When?", "answers": [{"text": "in 1905", "answer_start": 6}],
             "is_impossible": False},
            {"id": "c", "question": "Who?", "answers": [], "is_impossible": True,
             "plausible_answers": [{"text": "Paris", "answer_start": 0}]},
            {"id": "d", "question": "Why?", "answers": [], "is_impossible": True},
        ]}]}]}
    path.write_text(json.dumps(data))
    return path


def test_cli_v2_and_v1(tmp_path, capsys):
    data = _official_json(tmp_path / "dev-v2.0.json")
    (tmp_path / "p.json").write_text(json.dumps(V2_PREDS))
    (tmp_path / "na.json").write_text(json.dumps({"a": -2.0, "b": 0.5, "c": 3.0, "d": 1.5}))
    out = main(["--version", "v2", "--data", str(data), "--predictions", str(tmp_path / "p.json"),
                "--na-probs", str(tmp_path / "na.json")])
    printed = json.loads(capsys.readouterr().out)
    assert printed == out
    assert (out["exact"], out["best_f1"], out["best_f1_thresh"]) == (75.0, pytest.approx(85.0), 0.5)
    # v1 rules on answerable questions only
    (tmp_path / "p1.json").write_text(json.dumps({"a": "Paris", "b": "1905"}))
    v1 = tmp_path / "dev-v1.1.json"
    v1.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Paris in 1905", "qas": [
        {"id": "a", "question": "?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "b", "question": "?", "answers": [{"text": "in 1905", "answer_start": 6}]}]}]}]}))
    out1 = main(["--version", "v1", "--data", str(v1), "--predictions", str(tmp_path / "p1.json")])
    # a: 1/1; b: "1905" vs [in, 1905]: P 1, R 1/2 -> F1 2/3, EM 0
    assert out1 == pytest.approx({"exact_match": 50.0, "f1": 100 * (1 + 2 / 3) / 2})


def test_cli_errors_are_messages(tmp_path):
    with pytest.raises(SystemExit, match="SQuAD file not found"):
        main(["--version", "v2", "--data", str(tmp_path / "none.json"), "--predictions", str(tmp_path / "p.json")])
    data = _official_json(tmp_path / "dev-v2.0.json")
    (tmp_path / "p.json").write_text(json.dumps({"a": "Paris"}))
    with pytest.raises(SystemExit, match="3 question"):
        main(["--version", "v2", "--data", str(data), "--predictions", str(tmp_path / "p.json")])
