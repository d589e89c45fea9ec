"""The CPU-scale reproduction's configuration: MiniLM on RTE, CoLA, STS-B and SST-2.

Writes, from the DeBERTaV3-base sources the paper's Table 1 uses and the study's budgets
(`conf/study/cpu-minilm.yaml`: each task's last budget, batch, length, evaluation interval, held-out
slice and the tuning grid's shape):

* `conf/hp/cpu/minilm/<task>.yaml` (`preset=cpu`): DCFT's settings, the authors' DeBERTaV3-base
  script values (`conf/hp/authors/deberta-v3-base/<task>.yaml`) with the CPU budget below;
* `conf/method_hp/own/minilm/<method>/<task>.yaml`: every baseline's own DeBERTaV3-base settings
  (`scripts/method_hp.py`'s source tables) with the same CPU budget.

How a source's setting becomes a CPU one (the same rule for every method):

* steps, batch, max length, evaluation interval and held-out slice are the task's budget in the
  study file, equal for every method (paper App. E: the same batch size for every method of a dataset);
* warm-up keeps the source's *fraction* of its run: `warmup_steps / (epochs x ceil(n_train / 32))`
  (batch 32, the authors' DeBERTaV3-base batch), or the source's `warmup_ratio`; AdaLoRA's schedule
  (`tinit`, `tfinal`, `deltaT`, in steps) is scaled by the same ratio of CPU to source steps;
* everything else (learning rate, weight decay, clipping, epsilon, dropout, shape) is the source's;
* the learning-rate grid is the source's rate and the values two steps either side of it on the
  1-2-3-5-8 ladder (about x2.5 apart), e.g. 8e-4 -> 3e-4, 8e-4, 2e-3.

The runs themselves (grids, seeds, budget checks, ablations) are planned from the study file by
`python -m dcft.study plan conf/study/cpu-minilm.yaml`.

Written in-house: a transcription of sources into configs, not a library feature.

    python scripts/cpu_study.py          # rewrite every file
    python scripts/cpu_study.py --check  # exit 1 if a file differs from what would be written
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import method_hp as mh  # noqa: E402  (the baselines' source tables and the yaml renderer)

from dcft.study.planner import rate_grid  # noqa: E402
from dcft.study.spec import load  # noqa: E402

ROOT = mh.ROOT
SOURCE_MODEL = mh.V3  # the sources are DeBERTaV3-base's (paper Table 1)
SOURCE_BATCH = 32  # the authors' DeBERTaV3-base batch; converts a source's warm-up steps into a fraction
N_TRAIN = {"rte": 2490, "cola": 8551, "stsb": 5749, "sst2": 67349}  # GLUE train.tsv rows
BASELINES = ("full", "bitfit", "hadapter", "padapter", "lora", "lorafa", "sora", "adalora")
STUDY = load(ROOT / "conf" / "study" / "cpu-minilm.yaml")
MODEL = dict(STUDY.run)["model"]
TASKS = tuple(STUDY.tasks)
SEED = STUDY.tuning.seed
# Each task's budget: the last one the study walks (the earlier ones were checked and found short).
BUDGET = {t: {"max_steps": b.steps, "batch_size": b.batch_size, "max_len": b.max_len, "eval_steps": b.eval_steps,
              "holdout": b.holdout} for t, b in STUDY.tasks.items()}
HP_DIR = ROOT / "conf" / "hp" / "cpu" / MODEL


def lr_grid(rate: float) -> list[float]:
    """The study's tuning grid around a source's rate."""
    return rate_grid(STUDY.tuning, rate)


def source_steps(task: str, epochs: float) -> int:
    return int(epochs * math.ceil(N_TRAIN[task] / SOURCE_BATCH))


def warmup_fraction(task: str, values: dict[str, Any]) -> float:
    """The source's warm-up as a fraction of its whole run."""
    if (values.get("warmup_steps") or 0) > 0:
        return round(values["warmup_steps"] / source_steps(task, values["epochs"]), 4)
    return float(values.get("warmup_ratio") or 0.0)


def cpu_values(task: str, values: dict[str, Any]) -> dict[str, Any]:
    """A source's settings with the CPU budget's warm-up (and AdaLoRA schedule) in place of its own."""
    out = {k: v for k, v in values.items() if k not in ("epochs", "warmup_steps", "warmup_ratio")}
    out["warmup_steps"] = 0
    out["warmup_ratio"] = warmup_fraction(task, values)
    if "tinit" in values:
        ratio = BUDGET[task]["max_steps"] / source_steps(task, values["epochs"])
        for k in ("tinit", "tfinal", "deltaT"):
            out[k] = max(1, round(values[k] * ratio))
    return out


def authors_preset(task: str) -> dict[str, Any]:
    path = ROOT / "conf" / "hp" / "authors" / SOURCE_MODEL / f"{task}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path))


_v = mh._yaml_value  # a number as the generated yaml writes it


def render_preset(task: str) -> str:
    a = authors_preset(task)
    t, b = a["train"], BUDGET[task]
    n_hold = round(b["holdout"] * N_TRAIN[task])
    n_train = N_TRAIN[task] - n_hold
    examples = b["max_steps"] * b["batch_size"]
    src_steps = source_steps(task, t["epochs"])
    warm = warmup_fraction(task, t)
    dh = a["dcft_hp"]
    lines = [
        "# @package _global_",
        f"# MiniLM x {task}, the CPU-scale reproduction (preset=cpu): DCFT with the authors'",
        f"# DeBERTaV3-base script values (conf/hp/authors/{SOURCE_MODEL}/{task}.yaml) and the CPU budget,",
        "# the same budget every baseline runs with (conf/method_hp/own/minilm/). Written by scripts/cpu_study.py.",
        "train:",
        f"  lr: {_v(t['lr'])}{'':<8}# authors' rate; the study tunes it (grid {', '.join(_v(x) for x in lr_grid(t['lr']))})",
        f"  batch_size: {b['batch_size']}{'':<6}# examples per step, every method (paper App. E)",
        f"  max_steps: {b['max_steps']}{'':<6}# CPU budget: {examples:,} examples = {examples / n_train:.2f} epochs of the {n_train:,} "
        "training rows",
        f"  max_len: {b['max_len']}{'':<8}# tokens (authors: {t['max_len']})",
        "  warmup_steps: 0     # warm-up as a fraction instead (next key)",
        f"  warmup_ratio: {warm}  # authors' {t['warmup_steps']} warm-up steps / their {src_steps:,} steps "
        f"({t['epochs']} epochs x {math.ceil(N_TRAIN[task] / SOURCE_BATCH)})",
        f"  cls_dropout: {_v(t['cls_dropout'])}{'':<5}# authors' classifier dropout",
        f"  weight_decay: {_v(t['weight_decay'])}{'':<4}# authors' weight decay",
        f"  eval_steps: {b['eval_steps']}{'':<7}# evaluate held-out slice and dev every N steps (learning curves) and at the end",
        "  group_by_length: true  # batches of similar length: less padding on the CPU (every method alike)",
        "data:",
        f"  holdout: {b['holdout']}{'':<6}# {n_hold:,} training rows held out (seeded by the run's seed): the learning rate "
        "and best step are chosen on them, dev is reported",
        "  pad_to_max_length: false  # pad per batch (authors: to max_len; only speed differs)",
        "dcft_hp:",
        f"  reg_orth_coef: {_v(dh['reg_orth_coef'])}  # authors' gamma",
        f"  r: {_v(dh['r'])}{'':<12}# authors' r (scaling alpha / r)",
        f"  alpha: {_v(dh['alpha'])}{'':<8}# authors' alpha",
    ]
    return "\n".join(lines) + "\n"


def baseline_entry(method: str) -> mh.Entry:
    src = {t: mh.entry_for(SOURCE_MODEL, method, t) for t in TASKS}
    first = src[TASKS[0]]
    per_task = {t: cpu_values(t, mh.values_for(e, t)) for t, e in src.items()}
    grids = "; ".join(f"{t} {', '.join(_v(x) for x in lr_grid(per_task[t]['lr']))}" for t in TASKS)
    return mh.Entry(MODEL, method, first.title + " (CPU study)", first.source, {}, per_task, tasks=TASKS,
                    notes=(*first.notes,
                           "CPU study (scripts/cpu_study.py): the DeBERTaV3-base source's settings with "
                           "the task's CPU budget (conf/hp/cpu/minilm/<task>.yaml); warm-up as the source's "
                           "fraction of its run" + ("; AdaLoRA's schedule scaled by CPU / source steps" if method ==
                                                    "adalora" else "") + ".",
                           f"Learning-rate grid (stage 1, seed {SEED}): {grids}."))


def planned_files() -> dict[Path, str]:
    files = {HP_DIR / f"{t}.yaml": render_preset(t) for t in TASKS}
    for m in BASELINES:
        e = baseline_entry(m)
        for t in TASKS:
            files[mh.OUT / MODEL / m / f"{t}.yaml"] = mh.render_hp(e, t).replace(
                "Written by scripts/method_hp.py from its source tables", "Written by scripts/cpu_study.py")
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file differs from what would be written")
    args = ap.parse_args(argv)
    stale = [p for p, text in planned_files().items() if not (p.exists() and p.read_text(encoding="utf-8") == text)]
    for p in stale:
        if not args.check:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(planned_files()[p], encoding="utf-8")
        print(("differs: " if args.check else "wrote: ") + str(p.relative_to(ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
