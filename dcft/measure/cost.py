"""Estimated compute of a set of runs on a device: the runs, optimizer steps and hours, so a user knows the
cost before launching (`python -m dcft.study plan`, `python -m dcft.gpu_check.hours`). An estimate, not a
measurement.

The model of a run's time (the one `dcft.gpu_check.hours` states for the paper's tables):

* training: optimizer steps x batch x max_len tokens (the authors' presets pad every batch to max_len);
* evaluation: every `eval_steps` steps and at the end, the dev set's examples (and the held-out slice's,
  `data.holdout`) x max_len tokens at EVAL_COST of a training token (a forward pass without the backward);
* per token: proportional to the backbone's non-embedding parameters (layers x (4 h^2 + 2 h i):
  attention projections and FFN; attention scores and embeddings left out, so a longer sequence costs
  linearly more), and FULL_FT_COST for full fine-tuning where no measured step says otherwise.

Run time = that cost (token x parameters) x a device's seconds per token-parameter (`StepTime`), taken from

* a `make bench` file (`results/bench/*.json`, `dcft.measure.bench`'s schema: `model`, `batch`, `seq_len` and one
  row per setting with its median step time `step_s_median`): each run is costed by the bench row of its
  own method where the bench has one (`dcft-k<d>s<s>-fast`, `lora-r1`, `full`), else by LoRA r=1's row
  (every other PEFT method), scaled from the bench's batch x sequence length and model to the run's;
* a GPU check (`results/gpu-check/*.json`): its fp32 bench, read the same way;
* a named GPU's stated figure (`conf/cost/gpus.yaml`): a step time, or a whole timed run, of one method.

Written in-house: a few lines of arithmetic over this project's own bench and config files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "conf" / "cost" / "gpus.yaml"  # named GPUs' stated figures
BENCH_DIR = ROOT / "results" / "bench"  # `make bench`'s files
# GLUE (train, dev) examples; MNLI's dev is matched + mismatched; SQuAD counts questions (long contexts
# become a few more windows, left out).
EXAMPLES = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "qqp": (363846, 40430),
            "stsb": (5749, 1500), "mnli": (392702, 19647), "qnli": (104743, 5463), "rte": (2490, 277),
            "squad": (87599, 10570), "squad_v2": (130319, 11873)}
EVAL_COST = 1 / 3  # a dev token against a training token
FULL_FT_COST = 1.5  # full fine-tuning's token against a PEFT method's, where no measured step says otherwise
LORA_ROW = "lora-r1"  # the bench row of every PEFT method the bench did not time itself


@dataclass(frozen=True)
class Run:
    """One run, with what its cost depends on."""

    run_dir: str
    model: str
    task: str
    method: str
    kernel: int | None
    steps: int
    batch: int
    max_len: int
    evals: int
    backbone: int  # non-embedding parameters of the backbone
    held_out: int = 0  # examples of the held-out slice, evaluated beside dev
    stride: int | None = None  # DCFT stride; None = kernel

    @property
    def tokens(self) -> float:
        """Training tokens, plus evaluated tokens at EVAL_COST."""
        evaluated = EXAMPLES[self.task][1] + self.held_out
        return self.steps * self.batch * self.max_len + EVAL_COST * self.evals * evaluated * self.max_len

    @property
    def cost(self) -> float:
        """Token-parameters of the run at a PEFT method's rate: `tokens` x the backbone's size (x FULL_FT_COST
        for full fine-tuning)."""
        return self.tokens * self.backbone * (FULL_FT_COST if self.method == "full" else 1.0)

    @property
    def bench_label(self) -> str:
        """The `dcft.measure.bench` row that times this run's method."""
        if self.method == "dcft":
            return f"dcft-k{self.kernel}s{self.stride or self.kernel}-fast"
        return "full" if self.method == "full" else LORA_ROW


def backbone_size(arch: Mapping[str, Any]) -> int:
    """layers x (4 h^2 + 2 h i): the attention projections and the FFN of every layer."""
    h, i, layers = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    return layers * (4 * h * h + 2 * h * i)


def model_backbone(model: str) -> int:
    """`backbone_size` of `conf/model/<model>.yaml`."""
    from dcft.harness.config import load_group_file

    return backbone_size(load_group_file("model", model)["arch"])


def optimizer_steps(train: Mapping[str, Any], n_train: int) -> int:
    """`max_steps` when positive, else ceil(epochs x steps per epoch): the training loop's rule
    (`dcft.harness.train.total_steps`, not imported: a measurement stays out of the training side)."""
    per_epoch = math.ceil(math.ceil(n_train / train["batch_size"]) / train.get("grad_accum", 1))
    max_steps = train.get("max_steps", -1) or -1
    return max_steps if max_steps > 0 else max(1, math.ceil(train["epochs"] * per_epoch))


def evaluations(steps: int, eval_steps: int | None) -> int:
    """Every `eval_steps` steps and at the end (only at the end when `eval_steps` <= 0)."""
    return steps // eval_steps + 1 if eval_steps and eval_steps > 0 else 1


def held_out_examples(task: str, fraction: float | None) -> int:
    """`dcft.data.glue.holdout_count` of the task's training set (0 without a held-out slice)."""
    from dcft.data.glue import holdout_count

    return holdout_count(EXAMPLES[task][0], float(fraction)) if fraction else 0


# ---- a device's time --------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepTime:
    """A device's seconds per token-parameter: `per_cost[label]` for a bench row's method, `default` for
    every other run (full fine-tuning at FULL_FT_COST of it, through `Run.cost`)."""

    device: str  # the device's name in the table
    source: str  # where the figure comes from
    default: float
    per_cost: Mapping[str, float] = field(default_factory=dict)

    def seconds(self, run: Run) -> float:
        own = self.per_cost.get(run.bench_label)
        if own is not None:  # the run's own method was timed: its step, without the FULL_FT_COST guess
            return own * run.tokens * run.backbone
        return self.default * run.cost


def from_bench(bench: Mapping[str, Any], device: str, source: str) -> StepTime:
    """A `make bench` result (or a GPU check's fp32 bench): each training row's median step over its
    batch x seq_len tokens and the bench model's backbone; LoRA r=1's row for every other PEFT method."""
    size = bench["batch"] * bench["seq_len"] * model_backbone(bench["model"])
    rows = {r["label"]: r["step_s_median"] / size for r in bench["rows"]
            if r.get("phase", "train") == "train" and r.get("step_s_median")}
    if LORA_ROW not in rows:
        raise ValueError(f"{source}: no {LORA_ROW!r} training row with step_s_median; rows: {', '.join(rows) or 'none'}")
    return StepTime(device, source, rows[LORA_ROW], rows)


def from_figure(name: str, entry: Mapping[str, Any]) -> StepTime:
    """A named GPU's entry in conf/cost/gpus.yaml: `step_s` per optimizer step at batch x max_len, or the
    `hours` of a whole timed run (steps, evaluations every eval_steps on the task's dev set)."""
    need = ("source", "model", "method", "batch", "max_len")
    missing = [k for k in need if k not in entry] + ([] if ("step_s" in entry) != ("hours" in entry) else
                                                      ["exactly one of step_s, hours"])
    if "hours" in entry:
        missing += [k for k in ("task", "steps", "eval_steps") if k not in entry]
    if missing:
        raise ValueError(f"{FIGURES.name}: {name} lacks {', '.join(missing)}")
    backbone = model_backbone(entry["model"])
    if "step_s" in entry:
        seconds = float(entry["step_s"])
        cost = entry["batch"] * entry["max_len"] * backbone * (FULL_FT_COST if entry["method"] == "full" else 1.0)
    else:
        timed = Run(name, entry["model"], entry["task"], entry["method"], None, entry["steps"], entry["batch"],
                    entry["max_len"], evaluations(entry["steps"], entry["eval_steps"]), backbone)
        seconds, cost = float(entry["hours"]) * 3600, timed.cost
    return StepTime(name, str(entry["source"]), seconds / cost)


def figures(path: Path | None = None) -> dict[str, StepTime]:
    """Every named GPU of conf/cost/gpus.yaml (or `path`)."""
    from omegaconf import OmegaConf

    path = path or FIGURES
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True) if path.exists() else {}
    return {name: from_figure(name, entry) for name, entry in (raw or {}).items()}


def from_file(path: str | Path) -> StepTime:
    """A `make bench` file or a GPU check's record (its fp32 bench)."""
    p = Path(path)
    record = json.loads(p.read_text(encoding="utf-8"))
    if "bench" in record:  # a GPU check
        return from_bench(record["bench"]["fp32"], f"{record['environment']['gpu']} ({p.name})",
                          f"GPU check {p.name}, fp32 bench")
    return from_bench(record, f"{record['device']}: {record.get('device_name') or '?'} ({p.name})",
                      f"make bench {p.name}, {record['model']}, batch {record['batch']} x {record['seq_len']} tokens")


def devices(device: str | Path | None = None, model: str | None = None) -> list[StepTime]:
    """`device` None: every named GPU and the newest `make bench` file of each device for `model`
    (results/bench/); else one device: a name in conf/cost/gpus.yaml or the path of a bench / GPU check file."""
    named = figures()
    if device is None:
        latest: dict[tuple, Path] = {}  # the newest bench of each device (the files are named by date first)
        for p in sorted(BENCH_DIR.glob("*.json")):
            record = json.loads(p.read_text(encoding="utf-8"))
            if model is None or record.get("model") == model:
                latest[(record.get("device"), record.get("device_name"), record.get("model"))] = p
        return [*named.values(), *(from_file(p) for p in latest.values())]
    if str(device) in named:
        return [named[str(device)]]
    if Path(device).is_file():
        return [from_file(device)]
    raise ValueError(f"device={device!r}: not a named GPU of {FIGURES.relative_to(ROOT)} "
                     f"({', '.join(named) or 'none'}) nor a bench or GPU check file")


# ---- runs as a study plans them ---------------------------------------------------------------------
PLAN_KEYS = ("train.batch_size", "train.max_len")  # what a planned run's overrides must name


def run_of_plan(run: Mapping[str, Any], model: str | None = None) -> Run:
    """A study's planned run (keys task, setting, method, overrides (run.py overrides), steps, lr, seed,
    stage, group) as a `Run`; its model is `overrides["model"]`, else `model`."""
    over = run.get("overrides") or {}
    name = over.get("model", model)
    missing = [k for k in PLAN_KEYS if k not in over] + ([] if name else ["model"])
    if missing:
        raise ValueError(f"planned run {run.get('setting')}/{run.get('task')}: its overrides lack "
                         f"{', '.join(missing)} (the study's task budget and run: give them)")
    if run["task"] not in EXAMPLES:
        raise ValueError(f"planned run {run.get('setting')}: task={run['task']!r}; valid: {', '.join(EXAMPLES)}")
    steps = int(run["steps"])
    kernel = over.get("kernel", 2 if run["method"] == "dcft" else None)  # conf/config.yaml's kernel: 2
    return Run(f"{run.get('setting')}/{run['task']}/{run.get('lr')}/{run.get('seed')}", name, run["task"],
               run["method"], kernel, steps, int(over["train.batch_size"]), int(over["train.max_len"]),
               evaluations(steps, over.get("train.eval_steps", 100)), model_backbone(name),
               held_out_examples(run["task"], over.get("data.holdout")), over.get("stride"))


def estimate(runs: Iterable[Mapping[str, Any]], device: str | Path | None = None,
             model: str | None = None) -> list[dict[str, Any]]:
    """Per device (`devices`): {"device", "source", "runs", "steps", "hours"} of the planned `runs`."""
    costed = [run_of_plan(r, model) for r in runs]
    models = {r.model for r in costed}
    return [{"device": t.device, "source": t.source, "runs": len(costed), "steps": sum(r.steps for r in costed),
             "hours": sum(t.seconds(r) for r in costed) / 3600}
            for t in devices(device, next(iter(models)) if len(models) == 1 else None)]


def table(rows: Iterable[Mapping[str, Any]]) -> str:
    """`estimate`'s rows as a Markdown table, with where each device's figure comes from."""
    rows = list(rows)
    lines = ["| device | runs | optimizer steps | hours (estimate) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['device']} | {r['runs']:,} | {r['steps']:,} | {r['hours']:,.1f} |" for r in rows]
    lines += ["", "Estimated: tokens x backbone parameters x each device's measured time per token-parameter "
              "(dcft.measure.cost); " + "; ".join(f"{r['device']}: {r['source']}" for r in rows) + "."]
    return "\n".join(lines)
