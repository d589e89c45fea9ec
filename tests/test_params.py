"""`make params`: the paper's #Params cells recomputed on the meta device, units and match rule."""

from __future__ import annotations

import pytest

from dcft.measure import params as P


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


# Hand counts for the decoder rows. DCFT (stride = kernel d) per matrix: din/d + dout/d + d^2; LoRA r=1: din + dout.
# Llama-3.2-1B block: q, o 2048->2048; k, v 2048->512; gate, up 2048->8192; down 8192->2048; 16 blocks.
# Qwen2.5-0.5B block: q, o 896->896; k, v 896->128; gate, up 896->4864; down 4864->896; 24 blocks.
# GPT-2 block: c_attn 768->2304, attn.c_proj 768->768, c_fc 768->3072, mlp.c_proj 3072->768; 12 blocks.
DECODER_COUNTS = {
    ("llama-3.2-1b", "dcft", 8): 16 * (2 * (256 + 256 + 64) + 2 * (256 + 64 + 64) + 3 * (256 + 1024 + 64)),
    ("llama-3.2-1b", "dcft", 2): 16 * (2 * (1024 + 1024 + 4) + 2 * (1024 + 256 + 4) + 3 * (1024 + 4096 + 4)),
    ("qwen2.5-0.5b", "dcft", 8): 24 * (2 * (112 + 112 + 64) + 2 * (112 + 16 + 64) + 3 * (112 + 608 + 64)),
    ("qwen2.5-0.5b", "dcft", 2): 24 * (2 * (448 + 448 + 4) + 2 * (448 + 64 + 4) + 3 * (448 + 2432 + 4)),
    ("gpt2", "dcft", 8): 12 * ((96 + 288 + 64) + (96 + 96 + 64) + 2 * (96 + 384 + 64)),
    ("gpt2", "dcft", 2): 12 * ((384 + 1152 + 4) + (384 + 384 + 4) + 2 * (384 + 1536 + 4)),
    ("llama-3.2-1b", "lora", None): 16 * (2 * 4096 + 2 * 2560 + 3 * 10240),
    ("qwen2.5-0.5b", "lora", None): 24 * (2 * 1792 + 2 * 1024 + 3 * 5760),
    ("gpt2", "lora", None): 12 * ((768 + 2304) + 1536 + 2 * 3840),
}


def test_decoder_rows_are_ours_only_with_hand_counted_parameters():
    rows = P.build_rows(P.DECODER_CELLS)
    got = {(r["model"], r["method"], r["kernel"]): r["params"] for r in rows}
    assert got == DECODER_COUNTS
    assert all(r["table"] == P.OURS and r["paper"] is None and r["match"] is None for r in rows)
    llama8 = next(r for r in rows if r["model"] == "llama-3.2-1b" and r["kernel"] == 8)
    assert llama8["params"] == 95_232 and llama8["params_paper_units"] == "0.0908M"  # 95232 / 2^20 (binary)
    lora = next(r for r in rows if r["model"] == "llama-3.2-1b" and r["method"] == "lora")
    assert lora["params_paper_units"] == "0.7045M"  # 704512 / 10^6 (decimal, as the paper's baselines)


def test_main_writes_decoder_rows_without_paper_cells(tmp_path, monkeypatch):
    import pandas as pd

    qwen = [c for c in P.DECODER_CELLS if c.model == "qwen2.5-0.5b"]  # the smallest decoder: a fast test
    monkeypatch.setattr(P, "DECODER_CELLS", qwen)
    P.main(["--out", str(tmp_path), "--only", "decoders"])
    df = pd.read_csv(tmp_path / "params.csv")
    assert len(df) == len(qwen) and df["paper"].isna().all() and df["match"].isna().all()
    assert (df["table"] == P.OURS).all()
    assert "- Ours, dcft (qwen2.5-0.5b): no paper cell" in (tmp_path / "params.md").read_text()
