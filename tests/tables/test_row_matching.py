"""Which runs fill which row of each paper table: exactly the runs of the row's setting.

A DCFT row is one (kernel, stride, targets) setting (stride null in a run means stride = kernel); a
baseline row is its method. For every table, built from result files written like
`tests/tables/test_tables.py` writes them:

* one run per row, each with its own value, fills its own row and nothing else (n = 1, its value);
* runs one setting away from a row (another kernel, stride or target set, or a method the table
  does not have) fill nothing at all;
* Table 5 from stride-2 runs alone leaves the stride 1, 4 and 8 rows empty;
* the scale: GLUE metrics ×100, SQuAD v1.1 and v2.0 metrics as they are (already ×100).

The expected cells are worked out here from the paper CSV's own columns, not by `Row.matches`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dcft.report import tables as T
from dcft.methods import REGISTRY
from test_tables import write_run

KERNELS = (2, 4, 6, 8, 12)
STRIDES = (1, 2, 4, 6, 8, 12)
TARGETS = ("all", "qk", "qv", "qkv", "qkvo")


def setting(row: T.Row) -> tuple:
    """What a run must have to fill `row`, read from the paper CSV's columns."""
    if row.kernel is None:
        return (row.method,)
    return (row.method, row.kernel, row.stride if row.stride is not None else row.kernel, row.targets or "all")


def score_cells(cells):
    return [c for c in cells if c.task not in ("", "avg") and c.metric not in ("params", "time_h")]


def write_setting(root: Path, model: str, s: tuple, task: str, metric: str, value: float, seed: int = 6) -> None:
    if len(s) == 1:
        write_run(root, model, task, s[0], seed=seed, metrics={metric: value})
    else:
        _, kernel, stride, targets = s
        write_run(root, model, task, "dcft", seed=seed, kernel=kernel, stride=None if stride == kernel else stride,
                  targets=targets, metrics={metric: value})


def scale(task: str) -> float:
    return 1.0 if task in ("squad", "squad_v2") else 100.0


@pytest.mark.parametrize("number", T.TABLES)
def test_each_run_fills_exactly_its_own_row(number, tmp_path):
    table = T.load_paper(number)
    task, metric = table.columns[0]
    expected = {}
    for i, row in enumerate(table.rows):
        value = 0.40 + 0.01 * i if scale(task) == 100.0 else 40.0 + i
        write_setting(tmp_path, row.model, setting(row), task, metric, value)
        expected[(row.model, row.setting)] = value * scale(task)
    _, cells = T.build(number, T.load_runs(tmp_path))
    for c in score_cells(cells):
        key = (c.paper_model, c.row.setting)
        if (c.task, c.metric) == (task, metric):
            assert c.n == 1 and c.ours == pytest.approx(expected[key], abs=1e-9), (key, c.ours, c.n, c.runs)
        else:
            assert c.n == 0 and c.ours is None, (key, c.task, c.metric)


def near_misses(table: T.PaperTable, model: str) -> list[tuple]:
    """Settings one field away from a row of `model`, that no row of `model` has."""
    rows = [setting(r) for r in table.rows if r.model == model]
    taken = set(rows)
    out = set()
    for s in rows:
        if len(s) == 1:
            continue
        _, k, st, tg = s
        out |= {("dcft", k2, k2 if st == k else st, tg) for k2 in KERNELS if k2 != k and (st == k or st <= k2)}
        out |= {("dcft", k, s2, tg) for s2 in STRIDES if s2 != st and s2 <= k and (k - s2) % s2 == 0}
        out |= {("dcft", k, st, t2) for t2 in TARGETS if t2 != tg}
    out |= {(m,) for m in REGISTRY if m != "dcft"}  # every baseline method
    return sorted(out - taken, key=str)


@pytest.mark.parametrize("number", T.TABLES)
def test_a_run_of_another_setting_never_fills_a_row(number, tmp_path):
    table = T.load_paper(number)
    task, metric = table.columns[0]
    written = 0
    for model in table.models:
        for s in near_misses(table, model):
            write_setting(tmp_path, model, s, task, metric, 0.5 if scale(task) == 100.0 else 50.0)
            written += 1
    assert written >= 10
    runs = T.load_runs(tmp_path)
    assert len(runs.usable) == written  # all of them are usable runs, none dropped as duplicates
    _, cells = T.build(number, runs)
    filled = [(c.paper_model, c.row.setting, c.runs) for c in score_cells(cells) if c.n or c.ours is not None]
    assert filled == []


def test_table5_from_stride2_runs_alone_leaves_the_other_strides_empty(tmp_path):
    metrics = {"cola": "validation/matthews_correlation", "mrpc": "validation/accuracy",
               "stsb": "validation/pearson", "rte": "validation/accuracy"}
    for task, metric in metrics.items():
        write_run(tmp_path, "deberta-v3-base", task, "dcft", kernel=8, stride=2, metrics={metric: 0.5})
    _, cells = T.build(5, T.load_runs(tmp_path))
    by_row: dict[str, dict] = {}
    for c in score_cells(cells):
        by_row.setdefault(c.row.setting, {})[c.task] = None if c.ours is None else round(c.ours, 9)
    assert by_row == {"stride=2": dict.fromkeys(metrics, 50.0), "stride=1": dict.fromkeys(metrics),
                      "stride=4": dict.fromkeys(metrics), "stride=8": dict.fromkeys(metrics)}


def test_squad_v1_and_v2_are_not_rescaled_glue_is(tmp_path):
    m = "deberta-v3-base"
    write_run(tmp_path, m, "squad", "dcft", kernel=2, metrics={"validation/exact_match": 86.5, "validation/f1": 92.9})
    write_run(tmp_path, m, "squad_v2", "dcft", kernel=2, metrics={"validation/exact": 84.1, "validation/f1": 87.6,
                                                                  "validation/best_f1": 88.0})
    write_run(tmp_path, m, "rte", "dcft", kernel=2, metrics={"validation/accuracy": 0.875})
    _, cells3 = T.build(3, T.load_runs(tmp_path))
    got = {(c.task, c.metric): c.ours for c in score_cells(cells3) if c.row.setting == "DCFT"}
    assert got == {("squad", "validation/exact_match"): pytest.approx(86.5), ("squad", "validation/f1"): pytest.approx(92.9),
                   ("squad_v2", "validation/exact"): pytest.approx(84.1), ("squad_v2", "validation/f1"): pytest.approx(87.6)}
    _, cells1 = T.build(1, T.load_runs(tmp_path))
    rte = [c.ours for c in score_cells(cells1) if c.row.setting == "DCFT †" and c.paper_model == m and c.task == "rte"]
    assert rte == [pytest.approx(87.5)]
