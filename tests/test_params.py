"""`make params`: the paper's #Params cells recomputed on the meta device, units and match rule."""

from __future__ import annotations

import pytest

from dcft import params as P


@pytest.mark.parametrize("count,cell,units,rendered,match", [
    (25_344, "0.024M", "binary", "0.024M", True),     # 0.02417 Mi
    (42_624, "0.041M", "binary", "0.041M", True),     # 0.04065 Mi: rounded
    (25_344, "24k", "binary", "25k", True),           # 24.75 Ki: printed truncated
    (25_344, "24.6K", "binary", "24.8K", False),      # neither rounding nor truncation of 24.75
    (12_288, "18.4k", "binary", "12.0k", False),
    (165_888, "0.17M", "decimal", "0.17M", True),
    (165_888, "0.17M", "binary", "0.16M", False),     # the baselines' cells are decimal
])
def test_paper_units_and_match_rule(count, cell, units, rendered, match):
    assert P.in_paper_units(count, cell, units) == (rendered, match)


def test_unparseable_cell_is_an_error():
    with pytest.raises(ValueError, match="0.08%"):
        P.parse_printed("0.08%")


def test_every_dcft_cell_reproduces_except_the_papers_own_inconsistencies(tmp_path):
    rows = P.build_rows(P.DCFT_CELLS)
    assert len(rows) == 19
    mismatches = {(r["table"], r["paper"]) for r in rows if not r["match"]}
    assert mismatches == {("5", "24.6K"), ("6", "18.4k")}
    by = {(r["table"], r["model"], r["kernel"], r["stride"], r["targets"]): r["params"] for r in rows}
    assert by[("5", "deberta-v3-base", 8, 1, "all")] == 169_488
    assert by[("1", "roberta-large", 2, 2, "all")] == 221_760
    assert by[("2", "deberta-v2-xxlarge", 8, 8, "all")] == 184_320


def test_main_writes_csv_in_the_issue_column_order(tmp_path, capsys):
    import pandas as pd

    P.main(["--out", str(tmp_path), "--only", "dcft"])
    df = pd.read_csv(tmp_path / "params.csv")
    assert list(df.columns[:10]) == P.COLUMNS
    assert (tmp_path / "params.md").read_text().startswith("# #Params")
