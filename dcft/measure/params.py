"""`make params`: every "#Params" cell of the paper, recomputed by building the model from its
config on the meta device, applying the method and counting its own trainable parameters
(classifier head and pooler apart, as the paper counts).

Units: the paper's DCFT cells use binary units (M = 2^20, K = 2^10; dcft-method.md shows this
reproduces them), its baseline cells decimal ones (M = 10^6). A cell `matches` when the printed
value equals the exact count in those units rounded or truncated to the printed decimals (the
paper does both: 0.0406 Mi is printed 0.041M, 24.75 Ki is printed 24k). Cells where the paper
contradicts its own formula keep `match=false`: the count is never bent. Decoder LLMs the paper
does not run (GPT-2, Llama-3.2-1B, Qwen2.5-0.5B) get rows of ours, without a paper cell.

    python -m dcft.measure.params [--out results/tables]
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

COLUMNS = ["table", "model", "method", "kernel", "stride", "targets", "params", "params_paper_units", "paper", "match"]
UNIT_BASE = {"binary": {"M": 2**20, "K": 2**10, "k": 2**10, "B": 2**30},
             "decimal": {"M": 10**6, "K": 10**3, "k": 10**3, "B": 10**9}}


@dataclass(frozen=True)
class Cell:
    """One printed "#Params" cell and the setting it follows from."""

    table: str  # paper table, e.g. "1"
    model: str  # conf/model name
    method: str  # method registry name
    paper: str | None  # the cell as printed, e.g. "0.024M"; None for our rows without a paper cell (decoder LLMs)
    units: str = "binary"  # "binary" (DCFT cells) or "decimal" (baseline cells)
    overrides: dict[str, Any] = field(default_factory=dict)  # method config values (kernel, stride, targets, r...)
    note: str = ""  # why this setting, where the paper does not state it


def _dcft(table: str, model: str, paper: str | None, kernel: int, stride: int | None = None, targets: str = "all",
          note: str = "") -> Cell:
    return Cell(table, model, "dcft", paper, "binary", {"kernel": kernel, "stride": stride, "targets": targets}, note)


V3, RL, XXL = "deberta-v3-base", "roberta-large", "deberta-v2-xxlarge"

DCFT_CELLS: list[Cell] = [
    _dcft("1", V3, "0.024M", 8), _dcft("1", V3, "0.079M", 2),
    _dcft("1", RL, "0.06M", 8), _dcft("1", RL, "0.21M", 2),
    _dcft("2", XXL, "0.18M", 8),
    *[_dcft("4", V3, p, k) for k, p in ((2, "0.079M"), (4, "0.041M"), (6, "0.029M"), (8, "0.024M"), (12, "0.023M"))],
    *[_dcft("5", V3, p, 8, s) for s, p in ((1, "165.5K"), (2, "85K"), (4, "44.9k"), (8, "24.6K"))],
    *[_dcft("6", V3, p, 8, None, t) for t, p in (("qk", "6k"), ("qv", "6k"), ("qkv", "9k"), ("qkvo", "18.4k"),
                                                  ("all", "24k"))],
]

def _base(table: str, model: str, method: str, paper: str, note: str, **overrides: Any) -> Cell:
    return Cell(table, model, method, paper, "decimal", overrides, note)


# Baseline cells (decimal units, as printed). The first seven follow from a stated or implied setting
# (baselines.md); the last three have none in the paper, so the setting is ours and `match` says whether it fits.
BASELINE_CELLS: list[Cell] = [
    _base("1", V3, "full", "184M", "", ),
    _base("1", V3, "bitfit", "0.1M", "every backbone bias, LayerNorm biases included (AdaLoRA reference)"),
    _base("1", V3, "hadapter", "0.31M", "bottleneck m = 8 after attention output and FFN output", bottleneck=8),
    _base("1", V3, "padapter", "0.3M", "bottleneck m = 16 after the FFN output", bottleneck=16),
    _base("1", V3, "lora", "0.17M", "r = 1 on ALL targets (the paper compares at rank 1)", r=1, targets="all"),
    _base("1", RL, "lora", "0.8M", "LoRA paper setting: r = 8 on query and value", r=8, targets="qv"),
    _base("2", XXL, "lora", "4.7M", "LoRA paper setting: r = 16 on query and value", r=16, targets="qv"),
    _base("1", V3, "sora", "0.12M", "setting not stated; ours: SoRA reference r = 8 on ALL, nominal count before "
          "sparsification (the paper counts live ranks after training, which no config determines); the paper's "
          "SoRA and LoRA-FA rows are identical to the digit", r=8, targets="all"),
    _base("1", V3, "lorafa", "0.12M", "setting not stated; ours: r = 1 on ALL as the other rank-1 baselines, only B "
          "trains (A frozen)", r=1, targets="all"),
    _base("1", RL, "lorafa", "3.7M", "setting not stated; ours: r = 8 on ALL (only B trains)", r=8, targets="all"),
]


# Decoder LLMs: not in the paper, so no printed cell and no `match`; the count is rendered in
# the units of the method's paper cells (DCFT binary, LoRA decimal). `all` is every linear layer of a block
# (Llama / Qwen2: q, k, v, o, gate, up, down; GPT-2: the fused c_attn, attn.c_proj, c_fc, mlp.c_proj).
OURS = "-"  # the `table` of rows without a paper table
DECODER_MODELS = ("gpt2", "llama-3.2-1b", "qwen2.5-0.5b")
DECODER_CELLS: list[Cell] = [
    *[_dcft(OURS, m, None, k, note="no paper cell (decoder LLM); ALL = every linear layer of a block")
      for m in DECODER_MODELS for k in (8, 2)],
    *[_base(OURS, m, "lora", None, "no paper cell (decoder LLM); r = 1 on ALL, the paper's LoRA comparison",
            r=1, targets="all") for m in DECODER_MODELS],
]


def parse_printed(cell: str) -> tuple[Decimal, str, int]:
    """`"0.024M"` -> (Decimal("0.024"), "M", 3 decimals)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.([0-9]+))?)\s*([MKkB])\s*", cell)
    if not m:
        raise ValueError(f"cannot parse printed #Params cell {cell!r}")
    return Decimal(m.group(1)), m.group(3), len(m.group(2) or "")


def in_paper_units(count: int, cell: str, units: str) -> tuple[str, bool]:
    """The exact count rendered like the printed cell, and whether the printed value equals it
    rounded (half up) or truncated to the printed number of decimals."""
    printed, unit, decimals = parse_printed(cell)
    exact = Decimal(count) / Decimal(UNIT_BASE[units][unit])
    q = Decimal(1).scaleb(-decimals)
    rounded, truncated = exact.quantize(q, ROUND_HALF_UP), exact.quantize(q, ROUND_DOWN)
    return f"{rounded}{unit}", printed in (rounded, truncated)


def in_units(count: int, units: str, decimals: int = 4) -> str:
    """A count in M of these units (binary or decimal), for rows without a printed cell."""
    return f"{Decimal(count) / Decimal(UNIT_BASE[units]['M']):.{decimals}f}M"


def count_cell(cell: Cell) -> int:
    """The method's own trainable parameters for a cell's setting, counted on the meta device."""
    from dcft.harness.config import load_group_file
    from dcft.methods import build_method
    from dcft.harness.models import build_model

    model = build_model(load_group_file("model", cell.model), device="meta")
    method = build_method({"name": cell.method, **cell.overrides})
    method.apply(model)
    return method.count(model).method


def build_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    """One row per cell, in `COLUMNS` order (plus `units` and `note`)."""
    rows = []
    for c in cells:
        n = count_cell(c)
        rendered, match = in_paper_units(n, c.paper, c.units) if c.paper is not None else (in_units(n, c.units), None)
        kernel = c.overrides.get("kernel")
        targets = c.overrides.get("targets", "all") if c.method not in ("full", "bitfit", "hadapter", "padapter") else None
        rows.append({"table": c.table, "model": c.model, "method": c.method, "kernel": kernel,
                     "stride": c.overrides.get("stride") or kernel, "targets": targets,
                     "params": n, "params_paper_units": rendered, "paper": c.paper, "match": match,
                     "units": c.units, "note": c.note})
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table with its footnote."""
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    fmt = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))  # noqa: E731
    body = "".join("| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |\n" for r in rows)
    notes = "".join(f"\n- Table {r['table']} {r['model']} {r['method']}: {r['note']}"
                    for r in rows if r["note"] and r["table"] != OURS)
    ours: dict[tuple[str, str], list[str]] = {}  # (method, note) -> models: one line per note, not per row
    for r in rows:
        if r["note"] and r["table"] == OURS:
            ours.setdefault((r["method"], r["note"]), []).append(r["model"])
    notes += "".join(f"\n- Ours, {method} ({', '.join(dict.fromkeys(models))}): {note}"
                     for (method, note), models in ours.items())
    return (
        "# #Params: the paper's cells, recomputed\n\n"
        "Generated by `make params` (`python -m dcft.measure.params`): each model built from `conf/model/` on the meta "
        "device, the method applied, its own trainable parameters counted (classifier head and pooler apart).\n\n"
        + head + body +
        "\nUnits: DCFT cells in binary units as the paper's DCFT numbers are (M = 2^20, K = k = 2^10); baseline "
        "cells in decimal units as the paper prints them (M = 10^6). `match` is true when the printed value "
        "equals the exact count rounded or truncated to the printed decimals. `match=false` cells are where "
        "the paper's printed number does not follow from its own formula (Table 5's 24.6K is 24.75 Ki; Table 6's "
        "18.4k for Q,K,V,O is 12 Ki), or, for baselines, where the setting had to be chosen. Rows with table "
        "`-` are ours only (decoder LLMs the paper does not run): no paper cell, no match; their count is "
        "shown in M of the method's units (DCFT binary, LoRA decimal)." + notes + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    from dcft.harness.console import help_text

    ap = argparse.ArgumentParser(prog="python -m dcft.measure.params", description=help_text(__doc__))
    ap.add_argument("--out", default="results/tables", help="output folder (default results/tables)")
    ap.add_argument("--only", choices=("dcft", "baselines", "decoders"),
                    help="only the DCFT cells, only the baseline cells, or only the decoder LLM rows (ours)")
    args = ap.parse_args(argv)
    cells = {"dcft": DCFT_CELLS, "baselines": BASELINE_CELLS, "decoders": DECODER_CELLS}.get(
        args.only, DCFT_CELLS + BASELINE_CELLS + DECODER_CELLS)
    rows = build_rows(cells)
    out = Path(args.out)
    from dcft.report.results import atomic_write_text

    atomic_write_text(out / "params.csv", pd.DataFrame(rows)[COLUMNS + ["units", "note"]].to_csv(index=False))
    atomic_write_text(out / "params.md", to_markdown(rows))
    print(to_markdown(rows))
    paper = [r for r in rows if r["match"] is not None]
    print(f"{sum(r['match'] for r in paper)}/{len(paper)} paper cells match ({len(rows) - len(paper)} rows of ours "
          f"without a paper cell); wrote {out}/params.csv and params.md")


if __name__ == "__main__":
    main()
