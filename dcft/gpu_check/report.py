"""The GPU check's record: one JSON file (`<gpu>-<date>.json`) and the Markdown report beside it
(`<gpu>-<date>.md`: headline, environment, verdict table, minutes per section, the bench tables)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dcft.gpu_check.environment import environment_markdown
from dcft.gpu_check.verdict import from_records, headline, markdown_table

SCHEMA_VERSION = 1


def slug(name: str) -> str:
    """A file-name form of a GPU name: "NVIDIA A100-SXM4-80GB" -> "nvidia-a100-sxm4-80gb"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def stem(record: dict[str, Any]) -> str:
    return f"{slug(record['environment']['gpu'])}-{record['created'][:10]}"


def markdown(record: dict[str, Any]) -> str:
    """The report of a GPU-check record."""
    from dcft.measure import bench

    verdicts = from_records(record["verdicts"])
    env = record["environment"]
    minutes = record.get("minutes") or {}
    lines = [f"# GPU check: {env['gpu']}, {record['created']}", "", f"**{headline(verdicts)}**", "",
             "Outcomes: `pass`; `FAIL` (the harness computes something wrong here); `MISSED` (a speed or memory "
             "target not met); `info` (a measurement with nothing to pass); `skipped` (with the reason).", "",
             "## Environment", "", environment_markdown(env), "", "## Verdicts", "", markdown_table(verdicts), ""]
    if minutes:
        total = sum(minutes.values())
        lines += [f"Minutes per section (measured): " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())
                  + f"; total {total:.1f} (estimated beforehand: {record.get('estimated_minutes', '?')}).", ""]
    for precision, result in (record.get("bench") or {}).items():
        lines += [f"## Bench, {precision}", "", bench.markdown(result), ""]
    return "\n".join(lines)


def write(record: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """`<out_dir>/<gpu>-<date>.json` and `.md`, written atomically; their paths."""
    from dcft.report.results import atomic_write_json, atomic_write_text

    base = Path(out_dir) / stem(record)
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    atomic_write_json(json_path, record)
    atomic_write_text(md_path, markdown(record) + "\n")
    return json_path, md_path
