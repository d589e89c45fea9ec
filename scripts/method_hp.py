"""Write `conf/method_hp/own/<model>/<method>/<task>.yaml` and the learning-rate sweeps
`conf/sweep/<table>_lr_<model>_<method>_<rate>.yaml` from the source tables below.

Every baseline of the paper's tables runs with its own published settings, not with DCFT's
(paper App. E: "We tune the learning rate and pick the best learning rate for every method. For
each dataset, the batch size is set as identical for every method."). A method_hp file is composed
after the model x task preset (`conf/hp/<preset>/<model>/<task>.yaml`) and overrides the optimiser
settings and the method's shape; batch size, max length and evaluation interval stay the preset's
(the dataset's). Each file names its source: a run script (repository, path, commit) or a paper
table, and says where the run differs from it. Where no source gives a number, the file says so and
the learning-rate sweep decides.

Learning-rate tuning is the same for every method of a table, DCFT included: each task's grid is
its own source rate (a baseline's method_hp file; DCFT's preset, `conf/hp/authors/`) and
`LR_STEPS` values either side of it on the 1-2-3-5-8 ladder (..., 1e-5, 2e-5, 3e-5, 5e-5, 8e-5,
1e-4, ...), so the source rate sits in the middle of every grid. A Hydra multirun crosses one grid
with all its tasks, so the tasks of a (table, model, method) that share a source rate share one
sweep file, named after that rate. The points tuned are those of the table's one-rate sweeps
(`TABLE_SWEEPS`: every model, task, method and DCFT kernel of the table).

Written in-house because it is a transcription, not a library feature. The generated files are
committed; `tests/test_method_hp.py` checks they equal what this script writes.

    python scripts/method_hp.py          # rewrite every file (and delete stale lr sweeps)
    python scripts/method_hp.py --check  # exit 1 if a file differs from what would be written
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dcft.ladder import clean, ladder_step

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "conf" / "method_hp" / "own"
SWEEPS = ROOT / "conf" / "sweep"
GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
SQUAD = ("squad", "squad_v2")

# ---- sources (repository @ commit, path; or paper, table) ------------------------------------------
SORA = "TsinghuaC3I/SoRA@c275ac237b68b888a918cf9dad36d3827e46f616"
LORA = "microsoft/LoRA@c4593f060e6a368d7bb5af5273b8e42810cdef90"
DEBERTA = "microsoft/DeBERTa@4d7fe0bd4fb3c7d4f4005a7cafabde9800372098"
FAIRSEQ = "facebookresearch/fairseq@1ffc48fad99ccd1547593f182103c36453bcc54f"
ADALORA = "QingruZhang/AdaLoRA@d10f5ebee16c478fa2f41a44a237b38e8c9b0338"

# key -> (yaml path, comment)
KEYS = {
    "lr": ("train.lr", "peak learning rate"),
    "epochs": ("train.epochs", "passes over the training set"),
    "warmup_steps": ("train.warmup_steps", "linear warm-up, optimizer steps (wins over warmup_ratio when > 0)"),
    "warmup_ratio": ("train.warmup_ratio", "linear warm-up, fraction of all optimizer steps"),
    "weight_decay": ("train.weight_decay", "AdamW weight decay"),
    "max_grad_norm": ("train.max_grad_norm", "gradient clipping, L2 norm; <= 0 disables"),
    "adam_beta2": ("train.adam_beta2", "AdamW beta2"),
    "adam_eps": ("train.adam_eps", "AdamW epsilon"),
    "cls_dropout": ("train.cls_dropout", "dropout before the classifier; null = model default"),
    "targets": ("targets", "target set of the low-rank update"),
    "r": ("method.r", "rank"),
    "alpha": ("method.alpha", "scaling numerator (update scaled by alpha / r)"),
    "bottleneck": ("method.bottleneck", "adapter bottleneck width m, features"),
    "activation": ("method.activation", "adapter non-linearity between down and up projection"),
    "sparse_lambda": ("method.sparse_lambda", "L1 weight on the gates (eta)"),
    "sparse_lambda_2": ("method.sparse_lambda_2", "proximal threshold xi on the gates"),
    "init_r": ("method.init_r", "initial rank per matrix"),
    "target_r": ("method.target_r", "final average rank per matrix"),
    "lora_alpha": ("method.lora_alpha", "scaling numerator (alpha / init_r)"),
    "tinit": ("method.tinit", "initial warm-up at full budget, optimizer steps"),
    "tfinal": ("method.tfinal", "final fine-tuning at the target budget, optimizer steps"),
    "deltaT": ("method.deltaT", "interval between budget allocations, optimizer steps"),
    "orth_reg_weight": ("method.orth_reg_weight", "orthogonal regulariser weight on P and Q"),
}


@dataclass
class Entry:
    """The settings of one (model, method): common values, per-task values, where they come from."""

    model: str
    method: str
    title: str  # e.g. "Full fine-tuning"
    source: str  # the citation of the common values
    common: dict[str, Any]
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: tuple[str, ...] = GLUE
    notes: tuple[str, ...] = ()  # extra lines for the file header
    task_source: dict[str, str] = field(default_factory=dict)  # a task whose values have another source


def _sora(**values: Any) -> dict[str, Any]:
    """The optimiser settings every SoRA-repository GLUE script shares, plus the script's own."""
    return {"warmup_steps": 0, "warmup_ratio": 0.06, "weight_decay": 0.1, "max_grad_norm": 0.1,
            "cls_dropout": None, **values}


def sora_note(batch: str, length: int) -> str:
    """What one SoRA-repository script runs that this harness does not, and why."""
    return (f"SoRA's script runs batch {batch} and max length {length} (no fp16); here batch size and max length "
            "stay the dataset's, i.e. the preset's (conf/hp/<preset>/<model>/<task>.yaml), the same for every "
            "method of a task (paper App. E: \"the batch size is set as identical for every method\").")


# Precision: every run of a table trains in fp32, as the authors' DCFT scripts (no fp16 flag); a source that
# trained in fp16 says so in its file, and `train.mixed_precision=fp16` runs its precision (a setting of its own).
FP32 = ("here fp32, as every method of the table (train.mixed_precision \"no\", the authors' DCFT scripts' "
        "precision); train.mixed_precision=fp16 runs the source's precision")

# DeBERTa repository, experiments/glue/<task>.sh: the `deberta-v3-base` block exists only for MNLI;
# the other tasks use the `base` block (DeBERTa base, the nearest published full fine-tuning row).
DEBERTA_BASE = {  # task: (epochs, warmup steps, lr, cls_drop_out)
    "cola": (6, 100, 2e-5, 0.15), "sst2": (6, 500, 2e-5, 0.15), "mrpc": (6, 50, 2e-5, 0.15),
    "qqp": (8, 500, 2e-5, 0.15), "stsb": (6, 100, 2e-5, 0.15), "mnli": (3, 1000, 1.5e-5, 0.1),
    "qnli": (4, 500, 2e-5, 0.15), "rte": (6, 100, 2e-5, 0.2),
}
DEBERTA_XXL = {  # xxlarge-v2 block of the same scripts
    "cola": (10, 100, 2.5e-6, 0.2), "sst2": (4, 500, 3e-6, 0.2), "mrpc": (6, 50, 2e-6, 0.2),
    "qqp": (10, 1000, 3e-6, 0.2), "stsb": (4, 100, 3e-6, 0.2), "mnli": (3, 1000, 3e-6, 0.3),
    "qnli": (4, 500, 3e-6, 0.2), "rte": (6, 50, 3e-6, 0.2),
}
# fairseq examples/roberta/README.glue.md (RoBERTa-large): lr, warm-up updates / total updates (10 epochs)
FAIRSEQ_GLUE = {"mnli": (1e-5, 7432, 123873), "qnli": (1e-5, 1986, 33112), "qqp": (1e-5, 28318, 113272),
                "rte": (2e-5, 122, 2036), "sst2": (1e-5, 1256, 20935), "mrpc": (1e-5, 137, 2296),
                "cola": (1e-5, 320, 5336), "stsb": (2e-5, 214, 3598)}
# microsoft/LoRA examples/NLU/roberta_large_<task>.sh: lr, epochs (all: warmup ratio 0.06, wd 0.1, r 8, alpha 16)
LORA_RL = {"cola": (3e-4, 20), "sst2": (4e-4, 10), "mrpc": (3e-4, 20), "qqp": (3e-4, 20), "stsb": (3e-4, 10),
           "mnli": (3e-4, 10), "qnli": (2e-4, 10), "rte": (4e-4, 20)}
# microsoft/LoRA examples/NLU/deberta_v2_xxlarge_<task>.sh: lr, epochs, warmup steps, warmup ratio, cls, wd
LORA_XXL = {"cola": (1.3e-4, 10, 100, 0.0, 0.1, 0.0), "sst2": (6e-5, 16, 1000, 0.0, 0.0, 0.01),
            "mrpc": (2e-4, 30, 0, 0.1, 0.0, 0.01), "qqp": (1e-4, 11, 10000, 0.0, 0.2, 0.01),
            "stsb": (2e-4, 10, 100, 0.0, 0.2, 0.1), "mnli": (1e-4, 5, 1000, 0.0, 0.15, 0.0),
            "qnli": (1e-4, 8, 500, 0.0, 0.1, 0.01), "rte": (2.6e-4, 11, 50, 0.0, 0.2, 0.01)}
# QingruZhang/AdaLoRA NLU/scripts/run_debertav3_<task>.sh (byte-identical to the DCFT repository's NLU/scripts/)
ADALORA_GLUE = {  # lr, epochs, warmup steps, warmup ratio, cls, wd, init_r, alpha, orth, tinit, tfinal, deltaT
    "cola": (8e-4, 25, 100, 0.0, 0.10, 0.0, 3, 32, 0.1, 800, 3500, 10),
    "sst2": (8e-4, 24, 1000, 0.0, 0.0, 0.01, 2, 16, 0.1, 6000, 22000, 100),
    "mrpc": (1e-3, 30, 0, 0.1, 0.0, 0.01, 2, 32, 0.1, 600, 1800, 1),
    "qqp": (8e-4, 5, 2000, 0.0, 0.15, 0.01, 2, 16, 0.1, 8000, 25000, 100),
    "stsb": (2.2e-3, 25, 100, 0.0, 0.2, 0.1, 2, 32, 0.3, 800, 2000, 10),
    "mnli": (5e-4, 7, 1000, 0.0, 0.15, 0.0, 3, 16, 0.1, 8000, 50000, 100),
    "qnli": (5e-4, 5, 500, 0.0, 0.1, 0.01, 2, 32, 0.1, 2000, 8000, 100),
    "rte": (1.2e-3, 50, 200, 0.0, 0.20, 0.01, 2, 32, 0.3, 600, 1800, 1),
}

V3, RL, XXL = "deberta-v3-base", "roberta-large", "deberta-v2-xxlarge"


def _entries() -> list[Entry]:
    e: list[Entry] = []
    # ---- DeBERTaV3-base (Table 1 rows reprinted from AdaLoRA; Table 3; Table 4's Full FT row) ----
    e.append(Entry(V3, "full", "Full fine-tuning",
                   f"{DEBERTA} experiments/glue/<task>.sh: the deberta-v3-base block (MNLI only) or the base block "
                   "(DeBERTa base, the other tasks)",
                   {"weight_decay": 0.01, "max_grad_norm": 1.0, "adam_eps": 1e-6, "warmup_ratio": 0.0},
                   {t: {"epochs": ep, "warmup_steps": w, "lr": lr, "cls_dropout": c}
                    for t, (ep, w, lr, c) in DEBERTA_BASE.items()},
                   notes=("weight decay 0.01, gradient clip 1 and Adam epsilon 1e-6 are DeBERTa/optims/args.py "
                          "defaults; the repository starts RTE, MRPC and STS-B from an MNLI-tuned model, "
                          "here from the pretrained one.",
                          "Precision: the MNLI deberta-v3-base block trains in fp16 (--fp16 True), the base blocks "
                          f"of the other tasks in fp32; {FP32}.",
                          "Alternative source for the same model: SoRA's scripts/run_glue_finetune.sh "
                          "(lr 5e-5, 10 epochs, warm-up ratio 0.06, weight decay 0.1, clip 0.1, batch 80, "
                          "max length 256).")))
    e.append(Entry(V3, "full", "Full fine-tuning",
                   "no SQuAD script for DeBERTaV3-base was read (the DeBERTa repository has none); the rate and "
                   "length are the DeBERTa repository's base-model GLUE values, the rest the preset's "
                   "(AdaLoRA SQuAD script)",
                   {"lr": 2e-5, "epochs": 3, "warmup_steps": 0, "warmup_ratio": 0.1, "weight_decay": 0.01,
                    "adam_eps": 1e-6},
                   tasks=SQUAD, notes=("No source gives these numbers: the learning-rate sweep "
                                       "(table3_lr_deberta-v3-base_full_*) decides.",)))
    e.append(Entry(V3, "bitfit", "BitFit", f"{SORA} scripts/run_glue_bitfit.sh",
                   _sora(lr=8e-4, epochs=10), notes=(sora_note("100", 256),)))
    opendelta = ("SoRA's script inserts OpenDelta's AdapterModel (thunlp/OpenDelta, opendelta/delta_models/"
                 "adapter.py): after the attention block and the FFN block (Houlsby placement), bottleneck 16, "
                 "activation gelu_new (tanh-approximated GELU), both projections N(0, 0.01).")
    e.append(Entry(V3, "hadapter", "Houlsby adapter (HAdapter)", f"{SORA} scripts/run_glue_adapter.sh",
                   _sora(lr=8e-4, epochs=20, bottleneck=8, activation="silu"),
                   notes=(sora_note("8", 128), opendelta,
                          "Here: bottleneck m = 8, the size the paper's 0.31M cell describes; activation SiLU "
                          "(swish), the Houlsby adapter of the code the paper's baseline rows come from "
                          f"({ADALORA} NLU/src/transformers/models/deberta_v2/modeling_deberta_v2.py, adapter_type "
                          "houlsby; the LoRA repository's RoBERTa adapter likewise); down-projection N(0, 0.02), "
                          "up-projection zero (identity at the start). method.activation=gelu_new runs OpenDelta's "
                          "activation.")))
    e.append(Entry(V3, "padapter", "Pfeiffer adapter (PAdapter)",
                   "no published Pfeiffer-adapter script for DeBERTaV3-base was found. The shape is the Pfeiffer "
                   "adapter of the code the paper's baseline rows come from "
                   f"({ADALORA} NLU/src/transformers/models/deberta_v2/modeling_deberta_v2.py, adapter_type pfeiffer: "
                   "after the FFN output only, ReLU, reading LayerNorm(h + input)); the optimiser settings are "
                   f"borrowed from the nearest adapter script for this model, {SORA} scripts/run_glue_adapter.sh, "
                   "whose adapter is a Houlsby-placed one (OpenDelta's)",
                   _sora(lr=8e-4, epochs=20, bottleneck=16),
                   notes=(sora_note("8", 128), "Bottleneck m = 16: the size the paper's 0.3M cell describes. The "
                          "learning-rate sweep decides the rate (no Pfeiffer-adapter source gives one).")))
    e.append(Entry(V3, "lora", "LoRA", f"{SORA} scripts/run_glue_lora.sh and config/lora_config.json",
                   _sora(lr=3e-4, epochs=10, r=1, alpha=2.0, targets="all"),
                   notes=(sora_note("8 (RTE 32)", 256),
                          "Rank 1 on ALL targets: the paper's 0.17M cell (SoRA's script: r 16 with OpenDelta's "
                          "LoraModel on its default modules, attention query and value in the OpenDelta source read).",
                          "Scaling: SoRA's script runs r 16 with lora_alpha 16, scaling alpha / r = 1; here alpha 2 "
                          "at r 1, scaling 2 (the LoRA repository's alpha = 2 r, as its RoBERTa-large r 8 / alpha 16 "
                          "and DeBERTaV2-xxlarge r 16 / alpha 32 scripts). method.alpha=1 runs the source's "
                          "scaling at rank 1.")))
    e.append(Entry(V3, "sora", "SoRA", f"{SORA} scripts/run_glue_sora_no_schedule.sh and src/lora.py",
                   _sora(lr=8e-4, epochs=20, r=8, alpha=16.0, sparse_lambda=10.0, sparse_lambda_2=3e-4,
                         targets="all"),
                   notes=(sora_note("8", 128), "The script is written for STS-B; the same values for every task "
                          "(the repository gives no other).")))
    e.append(Entry(V3, "lorafa", "LoRA-FA",
                   "no source: the LoRA-FA paper (arXiv 2308.03303) has no DeBERTaV3-base setting; LoRA's "
                   f"settings here ({SORA} scripts/run_glue_lora.sh)",
                   _sora(lr=3e-4, epochs=10, r=1, alpha=2.0, targets="all"),
                   notes=("No source gives these numbers for LoRA-FA: the learning-rate sweep decides "
                          "(table1_lr_deberta-v3-base_lorafa_*).", "Rank 1 on ALL targets as the paper's other "
                          "rank-1 baselines (dcft/measure/params.py); alpha 2 (scaling 2) as LoRA here.")))
    e.append(Entry(V3, "adalora", "AdaLoRA",
                   f"{ADALORA} NLU/scripts/run_debertav3_<task>.sh (byte-identical to the DCFT repository's "
                   "NLU/scripts/ at 38f71d2)",
                   {"max_grad_norm": 1.0, "target_r": 1},
                   {t: {"lr": v[0], "epochs": v[1], "warmup_steps": v[2], "warmup_ratio": v[3], "cls_dropout": v[4],
                        "weight_decay": v[5], "init_r": v[6], "lora_alpha": float(v[7]), "orth_reg_weight": v[8],
                        "tinit": v[9], "tfinal": v[10], "deltaT": v[11]} for t, v in ADALORA_GLUE.items()}))
    # Table 3: baselines sized to the paper's 0.08 % budget (see the sizes' note)
    budget = ("Sized for Table 3's 0.08 % budget, counted on the meta device against the 183,833,090 parameters "
              "of DeBERTaV3-base with its QA head: LoRA r = 1 on ALL 165,888 (0.090 %), HAdapter m = 4 165,984 "
              "(0.090 %), PAdapter m = 8 156,768 (0.085 %). No integer size gives 0.08 % exactly for HAdapter "
              "(m = 3: 0.070 %); m = 4 matches LoRA's count, the smallest budget of AdaLoRA's SQuAD table (rank 1 "
              "on all six matrices). LoRA r = 2 on Q,K,V,O (0.080 %) is the other reading.")
    for name, title, shape in (("lora", "LoRA", {"r": 1, "targets": "all"}), ("hadapter", "HAdapter", {"bottleneck": 4}),
                               ("padapter", "PAdapter", {"bottleneck": 8})):
        e.append(Entry(V3, name, title,
                       "no SQuAD setting published for this baseline; optimiser = the preset's (AdaLoRA "
                       f"{ADALORA} NLG_QA/scripts/run_debertav3_squadv2.sh)", dict(shape), tasks=SQUAD,
                       notes=(budget, "The learning-rate sweep (table3_lr_deberta-v3-base_<method>_*) decides the rate.")))
    # ---- RoBERTa-large (Table 1 rows reprinted from the LoRA paper) ----
    e.append(Entry(RL, "full", "Full fine-tuning", f"{FAIRSEQ} examples/roberta/README.glue.md",
                   {"epochs": 10, "warmup_steps": 0, "weight_decay": 0.1, "max_grad_norm": 0.0, "adam_beta2": 0.98,
                    "adam_eps": 1e-6, "cls_dropout": None},
                   {t: {"lr": lr, "warmup_ratio": round(w / n, 4)} for t, (lr, w, n) in FAIRSEQ_GLUE.items()},
                   notes=("Warm-up as the README's warm-up / total updates (6 %, QQP 25 %); fairseq clips no "
                          "gradient (--clip-norm 0) and uses Adam betas (0.9, 0.98), epsilon 1e-6.",
                          f"Precision: the README's command trains in fp16 (--fp16); {FP32}.")))
    for name, title, m, kind in (("hadapter", "Houlsby adapter (HAdapter)", 8, "houlsby"),
                                 ("padapter", "Pfeiffer adapter (PAdapter)", 16, "pfeiffer")):
        e.append(Entry(RL, name, title, f"{LORA} examples/NLU/adapter_{kind}_roberta_large_mnli.sh",
                       {"lr": 3e-4, "epochs": 5, "warmup_steps": 0, "warmup_ratio": 0.1, "weight_decay": 0.0,
                        "max_grad_norm": 1.0, "cls_dropout": None, "bottleneck": m},
                       notes=(f"The script is MNLI's (adapter_size {m}, the paper's 0.8M cell); the LoRA repository "
                              "has no other task: the learning-rate sweep decides there.",
                              "weight decay 0 and clip 1 are HF Trainer defaults (the script passes neither).")))
    lora_rl = {"warmup_steps": 0, "warmup_ratio": 0.06, "weight_decay": 0.1, "max_grad_norm": 1.0,
               "cls_dropout": None, "r": 8, "alpha": 16.0, "targets": "qv"}
    e.append(Entry(RL, "lora", "LoRA", f"{LORA} examples/NLU/roberta_large_<task>.sh", dict(lora_rl),
                   {t: {"lr": lr, "epochs": ep} for t, (lr, ep) in LORA_RL.items()},
                   notes=("r = 8, alpha 16 on query and value: the paper's 0.8M cell; MRPC, RTE and STS-B start from "
                          "the MNLI LoRA weights in the LoRA repository, here from the pretrained model.",)))
    e.append(Entry(RL, "lorafa", "LoRA-FA",
                   "no source read for LoRA-FA on RoBERTa-large (arXiv 2308.03303 gives no script); LoRA's "
                   f"settings ({LORA} examples/NLU/roberta_large_<task>.sh)",
                   {**lora_rl, "targets": "all"}, {t: {"lr": lr, "epochs": ep} for t, (lr, ep) in LORA_RL.items()},
                   notes=("r = 8 on ALL targets, only B trains: our reading of the paper's 3.7M cell "
                          "(dcft/measure/params.py).", "The learning-rate sweep decides the rate.")))
    # ---- DeBERTaV2-xxlarge (Table 2 rows reprinted from the LoRA paper) ----
    e.append(Entry(XXL, "full", "Full fine-tuning", f"{DEBERTA} experiments/glue/<task>.sh, xxlarge-v2 block",
                   {"weight_decay": 0.01, "max_grad_norm": 1.0, "adam_eps": 1e-6, "warmup_ratio": 0.0},
                   {t: {"epochs": ep, "warmup_steps": w, "lr": lr, "cls_dropout": c}
                    for t, (ep, w, lr, c) in DEBERTA_XXL.items()},
                   notes=("The repository starts RTE and MRPC from an MNLI-tuned model; here from the pretrained one.",
                          f"Precision: the xxlarge-v2 blocks train in fp16 (--fp16 True); {FP32}.")))
    e.append(Entry(XXL, "lora", "LoRA", f"{LORA} examples/NLU/deberta_v2_xxlarge_<task>.sh",
                   {"max_grad_norm": 1.0, "r": 16, "alpha": 32.0, "targets": "qv"},
                   {t: {"lr": v[0], "epochs": v[1], "warmup_steps": v[2], "warmup_ratio": v[3], "cls_dropout": v[4],
                        "weight_decay": v[5]} for t, v in LORA_XXL.items()},
                   notes=("r = 16, alpha 32 on query and value: the paper's 4.7M cell; the scripts run on 8 GPUs "
                          "and start MRPC, RTE and STS-B from the MNLI LoRA weights.",
                          f"Precision: the scripts train in fp16 (--fp16); {FP32}.")))
    return e


ENTRIES = _entries()

# ---- learning-rate grids and the sweeps that run them ----------------------------------------------
LR_STEPS = 1  # ladder values on each side of a task's source rate in its tuning grid (3 rates per task)
PRESET = "authors"  # DCFT's source rates: the authors' run scripts (conf/hp/authors/<model>/<task>.yaml)
# A table's one-rate sweeps (hand-written, conf/sweep/): every model, task, method and DCFT setting they
# run is tuned by the table's learning-rate sweeps, DCFT as every baseline.
TABLE_SWEEPS = {
    "table1": ("table1_dcft", "table1_baselines_deberta", "table1_baselines_roberta"),
    "table2": ("table2_dcft", "table2_baselines"),
    "table3": ("table3_dcft", "table3_baselines"),
}
DCFT_KEYS = ("kernel", "stride", "targets")  # the DCFT setting a table's DCFT sweep spells out


def entry_for(model: str, method: str, task: str) -> Entry:
    for e in ENTRIES:
        if e.model == model and e.method == method and task in e.tasks:
            return e
    raise KeyError((model, method, task))


def values_for(e: Entry, task: str) -> dict[str, Any]:
    return {**e.common, **e.per_task.get(task, {})}


def preset_lr(model: str, task: str) -> float:
    return float(OmegaConf.load(ROOT / "conf" / "hp" / PRESET / model / f"{task}.yaml").train.lr)


def source_lr(model: str, method: str, task: str) -> float:
    """The rate a run of `method` on model x task gets without a sweep: DCFT's preset, a baseline's
    method_hp file, or (a baseline file that sets none, e.g. Table 3's adapters) the preset's."""
    if method != "dcft":
        lr = values_for(entry_for(model, method, task), task).get("lr")
        if lr is not None:
            return clean(lr)
    return clean(preset_lr(model, task))


def task_grid(rate: float) -> list[float]:
    """`rate` and the `LR_STEPS` ladder values below and above it, ascending."""
    return [ladder_step(rate, k) for k in range(-LR_STEPS, LR_STEPS + 1)]


@dataclass(frozen=True)
class LrSweep:
    """The learning-rate grid of the tasks of one (table, model, method) that share a source rate."""

    table: str  # "table1"
    model: str
    method: str
    rate: float  # the source rate of every task here, the middle of the grid
    tasks: tuple[str, ...]
    setting: tuple[tuple[str, str], ...] = ()  # DCFT: kernel, stride, targets as the table's DCFT sweep has them

    @property
    def name(self) -> str:
        return f"{self.table}_lr_{self.model}_{self.method}_{_yaml_value(self.rate)}"

    @property
    def grid(self) -> list[float]:
        return task_grid(self.rate)

    @property
    def runs(self) -> int:
        crossed = 1
        for _, values in self.setting:
            crossed *= len(values.split(","))
        return len(self.grid) * len(self.tasks) * crossed


def _sweep_params(name: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in OmegaConf.load(SWEEPS / f"{name}.yaml").hydra.sweeper.params.items()}


@lru_cache(maxsize=1)
def lr_sweeps() -> tuple[LrSweep, ...]:
    """Every learning-rate sweep: per table, per point of its one-rate sweeps, tasks grouped by source rate."""
    out: list[LrSweep] = []
    for table, names in TABLE_SWEEPS.items():
        for name in names:
            p = _sweep_params(name)
            for model in p["model"].split(","):
                for method in p["method"].split(","):
                    setting = tuple((k, p[k]) for k in DCFT_KEYS if k in p) if method == "dcft" else ()
                    by_rate: dict[float, list[str]] = {}
                    for task in p["task"].split(","):
                        by_rate.setdefault(source_lr(model, method, task), []).append(task)
                    out += [LrSweep(table, model, method, rate, tuple(tasks), setting) for rate, tasks in by_rate.items()]
    return tuple(out)


# ---- writers ------------------------------------------------------------------------------------
def _yaml_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.1e}" if (v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4)) else repr(v)
    return str(v)


def _comment(text: str) -> list[str]:
    """A comment paragraph wrapped at 110 columns (long paths are never split)."""
    return ["# " + line for line in textwrap.wrap(text, 108, break_long_words=False, break_on_hyphens=False)]


def render_hp(e: Entry, task: str) -> str:
    values = values_for(e, task)
    sweeps = [s for s in lr_sweeps() if s.model == e.model and s.method == e.method and task in s.tasks]
    lines = ["# @package _global_",
             f"# {e.title} on {e.model} x {task}: the baseline's own settings, composed after the",
             "# model x task preset; batch size, max length and evaluation interval stay the preset's (paper App. E:",
             "# the same batch size for every method).",
             *_comment(f"Source: {e.source}.")]
    for n in e.notes:
        lines += _comment(n)
    for s in sweeps:
        lines.append(f"# Learning-rate grid of its tuning sweep ({s.name}): "
                     + ", ".join(_yaml_value(g) for g in s.grid) + ".")
    lines.append("# Written by scripts/method_hp.py from its source tables: edit there, then rerun it.")
    groups: dict[str, list[tuple[str, Any, str]]] = {}
    for key, value in values.items():
        path, comment = KEYS[key]
        head, _, leaf = path.rpartition(".")
        groups.setdefault(head, []).append((leaf, value, comment))
    for head in sorted(groups, key=lambda h: ("", "train", "method").index(h)):
        items = groups[head]
        indent = ""
        if head:
            lines.append(f"{head}:")
            indent = "  "
        for leaf, value, comment in items:
            text = f"{indent}{leaf}: {_yaml_value(value)}"
            lines.append(f"{text:<28}# {comment}")
    return "\n".join(lines) + "\n"


def render_sweep(s: LrSweep) -> str:
    source = (f"conf/hp/{PRESET}/{s.model}/<task>.yaml, the authors' script" if s.method == "dcft" else
              f"conf/method_hp/own/{s.model}/{s.method}/<task>.yaml" + (
                  "" if "lr" in values_for(entry_for(s.model, s.method, s.tasks[0]), s.tasks[0]) else
                  f", which keeps the preset's rate (conf/hp/{PRESET}/{s.model}/<task>.yaml)"))
    setting = "".join(f" x {k} {v}" for k, v in s.setting)
    text = (f"Paper {s.table.replace('table', 'Table ')}, {s.method}{setting} on {s.model}: learning-rate tuning "
            "(paper App. E: \"we tune the learning rate and pick the best learning rate for every method\"), the same "
            f"for every method of the table, DCFT included. The tasks here ({', '.join(s.tasks)}) share the source rate "
            f"{_yaml_value(s.rate)} ({source}); the grid is that rate and {LR_STEPS} value{'s' * (LR_STEPS > 1)} "
            f"either side on the 1-2-3-5-8 ladder: {s.runs} runs. The tables pick per model, task and setting the rate "
            "with the best dev score (or held-out score with data.holdout > 0). Written by scripts/method_hp.py.")
    return "\n".join([
        "# @package _global_",
        f"# python run.py +sweep={s.name}   (dry run: python -m dcft.harness.sweep plan +sweep={s.name})",
        *_comment(text),
        "hydra:",
        "  mode: MULTIRUN",
        "  sweeper:",
        "    params:",
        f"      model: {s.model}",
        f"      task: {','.join(s.tasks)}",
        f"      method: {s.method}",
        *[f'      {k}: "{v}"' for k, v in s.setting],
        f"      train.lr: {','.join(_yaml_value(g) for g in s.grid)}",
        '      seed: "6"',
    ]) + "\n"


def planned_files() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for e in ENTRIES:
        for t in e.tasks:
            files[OUT / e.model / e.method / f"{t}.yaml"] = render_hp(e, t)
    for s in lr_sweeps():
        files[SWEEPS / f"{s.name}.yaml"] = render_sweep(s)
    return files


def stale_sweeps(planned: dict[Path, str]) -> list[Path]:
    """Learning-rate sweep files on disk that this script no longer writes (e.g. a source rate changed)."""
    return sorted(p for p in SWEEPS.glob("table*_lr_*.yaml") if p not in planned)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file differs from what would be written")
    args = ap.parse_args(argv)
    planned = planned_files()
    differ = [p for p, text in planned.items() if not (p.exists() and p.read_text(encoding="utf-8") == text)]
    stale = stale_sweeps(planned)
    for path in differ:
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(planned[path], encoding="utf-8")
        print(("differs: " if args.check else "wrote: ") + str(path.relative_to(ROOT)))
    for path in stale:
        if not args.check:
            path.unlink()
        print(("not written by this script: " if args.check else "deleted: ") + str(path.relative_to(ROOT)))
    return 1 if (args.check and (differ or stale)) else 0


if __name__ == "__main__":
    sys.exit(main())
