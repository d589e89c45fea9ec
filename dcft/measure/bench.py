"""`make bench`: training-step time and peak memory of DCFT against LoRA r=1, on the paper's model.

The DeBERTaV3-base architecture is built from `conf/model/deberta-v3-base.yaml` with random
weights (nothing is downloaded) and one batch of random token ids is used by every setting. The
settings are

* LoRA r=1 on ALL targets (peft layers, our `lora` method): the reference point of every ratio;
* DCFT with `impl="fast"` (Delta never built): kernel 2 and 8 at stride = kernel, kernel 8 at
  stride 4, 2 and 1;
* the same five DCFT settings with `impl="reference"` (Delta built by conv_transpose2d every
  forward pass, as the authors);
* DCFT kernel 8 = stride through the peft tuner (`get_peft_model`'s layers, `-peft`) and through
  the harness layer over GPT-2-style `Conv1D` targets (the same weights transposed, `-conv1d`),
  each against the harness `nn.Linear` row of the same run;
* the floor: the backbone frozen, only the classifier head and pooler training (`head-only`),
  what no adapter can beat; every row reports its overhead above it;
* full fine-tuning, for scale;

and, for inference (forward only, no grad, eval mode), the plain base model beside the merged
DCFT model (kernel 8 and 2, W <- W0 + scaling * Delta^T).

A training step is forward (task loss plus the method's extra loss, DCFT's orthogonal
regulariser), backward, `optimizer.step()` and `optimizer.zero_grad(set_to_none=True)`, with the
method's own optimizer (AdamW). `--precision bf16` runs the forward pass under bfloat16 autocast
(the extra loss, backward and optimizer outside it, float32 weights), as the harness's
`train.mixed_precision=bf16` does through Accelerate. Every setting gets `--warmup` untimed steps, then `--repeats`
timed steps **interleaved round-robin** (one step of each setting per round, the starting setting
rotating; inference: `--inference-repeats` rounds, by default 3x as many), so that load changes
on a shared machine hit every setting alike. The frozen backbone weights are shared by all PEFT
settings (only the head is copied), so every setting reads the same memory and the process holds
one backbone, not twelve. Times: `time.perf_counter` on CPU; CUDA
events with synchronisation on GPU. Reported: median, quartiles (IQR), min and max of the step
times, the ratio of medians to LoRA r=1 of the same run, and the quartiles of the per-round ratios.

Peak memory is measured once per setting, on one extra step with a fresh optimizer (so the
optimizer state it allocates counts): on CUDA `max_memory_allocated` after
`reset_peak_memory_stats`, minus what was allocated before the step; on CPU the peak of live
bytes in torch's allocator over the step, from every allocation and free the profiler records
(`profile_memory=True`). Both are the memory a step needs on top of the built model (activations,
gradients, optimizer state, temporaries); the backbone itself is the same for every setting.

    python -m dcft.measure.bench                         # defaults for a 2-core CPU, ~5-10 minutes
    python -m dcft.measure.bench --device cuda --batch 32 --seq-len 256 [--compile] [--precision bf16]
    python -m dcft.measure.bench --model tiny-deberta --batch 2 --seq-len 16 --repeats 1 --out /tmp/b.json

The result goes to `results/bench/<date>-<device>[-bf16][-compile][-<model>].json` (atomically)
and a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from dcft.methods.base import Method
from dcft.conditions import load_average
from dcft.report.results import cpu_model, git_commit

DEFAULT_MODEL = "deberta-v3-base"
DEFAULT_BATCH = 8
DEFAULT_SEQ_LEN = 128
DEFAULT_REPEATS = 5
DEFAULT_WARMUP = 1
DEFAULT_WARMUP_COMPILED = 2
INFERENCE_REPEAT_FACTOR = 3  # a forward pass is ~1/3 of a step: 3x the rounds for the same time, less noise
SCHEMA_VERSION = 1

# Targets of the issue (CPU, ratios of medians to LoRA r=1 of the same run).
LIMIT_STRIDE_EQ_KERNEL = 1.05  # DCFT fast, stride = kernel: step time and peak memory
LIMIT_OVERLAP = 1.25  # DCFT fast, kernel 8 with stride 4, 2, 1
LIMIT_MERGED = 1.05  # merged DCFT inference against the base model
# Fast and reference settings (and the peft / Conv1D routes) must give the same first loss on the same
# batch, to within the rounding of the precision: float32 1e-4 (at most 7.5e-8 measured on DeBERTaV3-base,
# results/bench/2026-12-02-cpu.json); under bf16 autocast every matrix product's inputs are rounded to 8
# significant bits (unit roundoff u = 2^-8) and the two paths round different intermediates, so 8 u
# relative (3.1e-2) bounds the loss difference (at most 2.4e-5 measured on the tiny DeBERTa, CPU).
LOSS_RTOL = {"fp32": 1e-4, "bf16": 8 * 2.0 ** -8}
PRECISIONS = tuple(LOSS_RTOL)
LIMIT_PEFT = 1.03  # DCFT through the peft tuner against the harness layer (step time)
LIMIT_CONV1D = 1.05  # DCFT on Conv1D targets against the same on nn.Linear (step time)


# --- settings ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One benchmarked configuration."""

    method: str  # "lora", "dcft", "full", or "base" (inference only)
    kernel: Optional[int] = None
    stride: Optional[int] = None
    impl: Optional[str] = None  # "fast" / "reference" for DCFT, else None
    phase: str = "train"  # "train" or "inference"
    via: str = "harness"  # DCFT layers: "harness" (DCFTLinear), "peft" (the peft tuner), "conv1d" (harness on Conv1D)

    @property
    def label(self) -> str:
        if self.method == "lora":
            return "lora-r1"
        if self.method == "dcft":
            tail = "merged" if self.phase == "inference" else self.impl
            return f"dcft-k{self.kernel}s{self.stride}-{tail}" + ("" if self.via == "harness" else f"-{self.via}")
        if self.method == "head":
            return "head-only"
        return self.method

    def method_config(self) -> dict[str, Any]:
        """The `build_method` config of this setting."""
        if self.method == "lora":
            return {"name": "lora", "r": 1, "targets": "all"}
        if self.method == "dcft":
            return {"name": "dcft", "kernel": self.kernel, "stride": self.stride, "impl": self.impl or "fast",
                    "targets": "all"}
        if self.method == "full":
            return {"name": "full"}
        raise ValueError(f"setting {self.label!r} has no method to apply")

    def build_method(self):
        """The `Method` this setting applies (the base `Method` trains the head alone)."""
        from dcft.methods import build_method

        if self.method == "head":
            return Method(None)
        if self.via == "peft":
            return PeftDcft(self.kernel, self.stride, self.impl or "fast")
        return build_method(self.method_config())


class PeftDcft(Method):
    """DCFT through the peft tuner (`DcftLinear`, injected by `peft.inject_adapter_in_model` on the
    same targets as the harness), in the harness `Method` interface so the benchmark's step (AdamW
    over adapter and head, orthogonal regulariser) is the harness row's step."""

    name = "dcft-peft"

    def __init__(self, kernel: int, stride: Optional[int], impl: str = "fast"):
        super().__init__(None)
        self.kernel, self.stride, self.impl = kernel, stride, impl

    def inject(self, model: nn.Module, targets: Any) -> None:
        from peft import inject_adapter_in_model

        from dcft.methods.dcft.tuner import DcftConfig
        from dcft.harness.models import resolve_targets

        inject_adapter_in_model(DcftConfig(kernel=self.kernel, stride=self.stride, impl=self.impl,
                                           target_modules=resolve_targets(model, targets)), model)

    def own_parameters(self, model: nn.Module):
        return ((n, p) for n, p in model.named_parameters() if ".dcft_" in n)

    def extra_loss(self, model: nn.Module):
        from dcft.methods.dcft.tuner import orthogonal_loss

        return orthogonal_loss(model, "default")


DCFT_SHAPES = ((2, 2), (8, 8), (8, 4), (8, 2), (8, 1))  # (kernel, stride)
LORA = Setting("lora")


HEAD_ONLY = Setting("head")  # the floor
VIA = (Setting("dcft", 8, 8, "fast", via="peft"), Setting("dcft", 8, 8, "fast", via="conv1d"))


def train_settings(shapes: tuple[tuple[int, int], ...] = DCFT_SHAPES) -> list[Setting]:
    """LoRA r=1, DCFT fast, DCFT reference (each at the (kernel, stride) `shapes`), DCFT via peft and
    on Conv1D, the head-only floor, full fine-tuning: the training rows, in table order."""
    fast = [Setting("dcft", k, s, "fast") for k, s in shapes]
    ref = [Setting("dcft", k, s, "reference") for k, s in shapes]
    return [LORA, *fast, *ref, *VIA, HEAD_ONLY, Setting("full")]


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """`"2:2,8:4"` -> ((2, 2), (8, 4)); a clear error naming the bad item otherwise."""
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        k, sep, s = item.partition(":")
        if not (sep and k.isdigit() and s.isdigit() and 1 <= int(s) <= int(k)):
            raise SystemExit(f"--shapes: {item!r} is not kernel:stride with 1 <= stride <= kernel (e.g. 8:4)")
        out.append((int(k), int(s)))
    return tuple(out)


def inference_settings() -> list[Setting]:
    """The plain base model and the merged DCFT model (kernel 8 and 2, stride = kernel)."""
    return [Setting("base", phase="inference"),
            Setting("dcft", 8, 8, "fast", phase="inference"),
            Setting("dcft", 2, 2, "fast", phase="inference")]


# --- device, model, batch ------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """`auto`: the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name}: only cpu, cuda[:N] and auto are supported")
    return device


def model_config(name: str, layers: Optional[int] = None) -> dict[str, Any]:
    """`conf/model/<name>.yaml`, with `num_hidden_layers` overridden by `layers` if given."""
    from dcft.harness.config import load_group_file

    cfg = load_group_file("model", name)
    cfg["arch"] = dict(cfg.get("arch") or {})
    if layers is not None:
        if layers < 1:
            raise SystemExit(f"--layers {layers}: must be >= 1")
        cfg["arch"]["num_hidden_layers"] = layers
    return cfg


def build_base(cfg: dict[str, Any], device: torch.device, seed: int) -> nn.Module:
    """The backbone with a 2-label classification head, random weights, on `device`."""
    from dcft.harness.models import build_model

    return build_model(cfg, head="classification", num_labels=2, device=device, seed=seed)


def make_batch(model: nn.Module, batch: int, seq_len: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """Random token ids (no padding) and labels; the same batch for every setting."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None)
    if limit and seq_len > limit:
        raise SystemExit(f"--seq-len {seq_len} is longer than the model's max_position_embeddings ({limit})")
    if batch < 1 or seq_len < 2:
        raise SystemExit("--batch must be >= 1 and --seq-len >= 2")
    g = torch.Generator().manual_seed(seed)
    low = min(4, config.vocab_size - 1)
    ids = torch.randint(low, config.vocab_size, (batch, seq_len), generator=g)
    labels = torch.randint(0, 2, (batch,), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}


def clone_sharing(base: nn.Module, copy_names: set[str]) -> nn.Module:
    """A deep copy of `base` whose parameters are the very same tensors as `base`'s, except those
    named in `copy_names` (copied). Buffers are copied (they are small)."""
    memo: dict[int, Any] = {id(p): p for n, p in base.named_parameters() if n not in copy_names}
    return copy.deepcopy(base, memo)


# --- one setting ready to run --------------------------------------------------------------------------
@dataclass
class Runner:
    """A model with its method (and optimizer when training), and the function one timed call runs."""

    setting: Setting
    module: nn.Module  # the eager model
    model: nn.Module  # what is called: `module`, or `torch.compile(module)`
    method: Any = None
    optimizer: Optional[torch.optim.Optimizer] = None
    params: int = 0  # the method's own trainable parameters (the paper's "#Params")
    trainable: int = 0  # own parameters plus the classifier head and pooler
    samples: list[float] = field(default_factory=list)
    loss_step0: Optional[float] = None
    peak_mem: Optional[int] = None
    precision: str = "fp32"  # "bf16": the forward pass under bfloat16 autocast

    def new_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return self.method.optimizer(self.module, lr=lr, weight_decay=0.0)


def autocast(runner: Runner, device: torch.device):
    """bfloat16 autocast on `device` for a bf16 runner, else nothing."""
    if runner.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(runner: Runner, batch: dict[str, torch.Tensor], optimizer: Optional[torch.optim.Optimizer] = None
               ) -> torch.Tensor:
    """Forward (task loss + the method's extra loss), backward, optimizer step, zero_grad. Only the
    model's forward pass runs under the runner's autocast, as in the harness (Accelerate)."""
    opt = optimizer or runner.optimizer
    with autocast(runner, batch["input_ids"].device):
        loss = runner.model(**batch).loss.float()
    extra = runner.method.extra_loss(runner.module)
    if extra is not None:
        loss = loss + extra
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


def infer_step(runner: Runner, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward only, in inference mode, without labels."""
    with torch.inference_mode(), autocast(runner, batch["input_ids"].device):
        return runner.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def maybe_compile(module: nn.Module, compile: bool) -> nn.Module:
    return torch.compile(module) if compile else module


def make_trainer(base: nn.Module, setting: Setting, seed: int, lr: float, compile: bool,
                 precision: str = "fp32") -> Runner:
    """The setting's model (PEFT: sharing the frozen backbone of `base`, own copy of the head;
    full: an own copy of everything), adapted with adapter parameters drawn from `seed`."""
    from dcft.harness.models import head_parameter_names, resolve_targets

    if setting.method == "full":
        module = copy.deepcopy(base)
    elif setting.via == "conv1d":
        targets = resolve_targets(base, "all")
        module = clone_sharing(base, set(head_parameter_names(base)) | {f"{n}.{w}" for n in targets
                                                                       for w in ("weight", "bias")})
        to_conv1d(module, targets)
    else:
        module = clone_sharing(base, set(head_parameter_names(base)))
    method = setting.build_method()
    torch.manual_seed(seed)  # same A, B, C for the fast and the reference path of one (kernel, stride)
    method.apply(module)
    module.train()
    count = method.count(module)
    runner = Runner(setting, module, maybe_compile(module, compile), method, params=count.method,
                    trainable=count.trainable, precision=precision)
    runner.optimizer = runner.new_optimizer(lr)
    return runner


def to_conv1d(model: nn.Module, names: list[str]) -> None:
    """Replace each named `nn.Linear` by the transformers `Conv1D` computing the same function
    (weight transposed, as GPT-2 stores it), in place."""
    from transformers.pytorch_utils import Conv1D

    from dcft.harness.models import get_submodule_parent

    for name in names:
        linear = model.get_submodule(name)
        conv = Conv1D(linear.out_features, linear.in_features).to(linear.weight.device, linear.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(linear.weight.t())
            conv.bias.copy_(linear.bias)
        parent, child = get_submodule_parent(model, name)
        setattr(parent, child, conv)


def make_inferer(base: nn.Module, setting: Setting, seed: int, compile: bool, precision: str = "fp32") -> Runner:
    """The base model itself, or a merged DCFT model: a copy of `base` with its own target weights
    (merging writes into them), DCFT applied with random A, B, C (Delta != 0), then merged."""
    from dcft.methods import build_method
    from dcft.harness.models import resolve_targets

    if setting.method == "base":
        module, method = base, None
    else:
        own = {f"{n}.weight" for n in resolve_targets(base, "all")}
        module = clone_sharing(base, own)
        method = build_method(setting.method_config())
        torch.manual_seed(seed)
        method.apply(module)
        method.merge(module)
    module.eval()
    return Runner(setting, module, maybe_compile(module, compile), method, precision=precision)


# --- measuring -------------------------------------------------------------------------------------------
def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of `fn` takes: CUDA events around it and a synchronisation on GPU,
    `perf_counter` on CPU (where the call returns when the work is done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes `fn` holds on top of what was allocated before it (see the module doc)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cpu = torch.autograd.DeviceType.CPU
    # every allocation (+bytes) and free (-bytes) in time order: the profiler's raw memory events
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == cpu]
    if not events:
        raise RuntimeError(f"torch {torch.__version__}: the profiler recorded no CPU memory events")
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()  # > 0: allocation, < 0: free
        peak = max(peak, live)
    return int(peak)


def quantile(xs: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of a non-empty list."""
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def spread(xs: list[float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_median": quantile(xs, 0.5), f"{prefix}_q1": quantile(xs, 0.25),
            f"{prefix}_q3": quantile(xs, 0.75), f"{prefix}_min": min(xs), f"{prefix}_max": max(xs)}


def run_rounds(runners: list[Runner], fn: Callable[[Runner], Any], repeats: int, device: torch.device,
               log: Callable[[str], None], what: str) -> None:
    """`repeats` rounds; each times one call of every runner, the first runner rotating per round.
    The garbage collector runs before each call, never inside one; the models themselves are
    frozen out of its reach (`gc.freeze`) so that collecting stays cheap."""
    n = len(runners)
    gc.collect()
    gc.freeze()
    try:
        for r in range(repeats):
            t0 = time.perf_counter()
            for i in range(n):
                runner = runners[(r + i) % n]
                gc.collect()
                gc.disable()
                try:
                    runner.samples.append(time_call(lambda: fn(runner), device))
                finally:
                    gc.enable()
            log(f"{what}: round {r + 1}/{repeats} done in {time.perf_counter() - t0:.1f} s")
    finally:
        gc.unfreeze()


# --- the benchmark ---------------------------------------------------------------------------------------
def machine(device: torch.device) -> dict[str, Any]:
    """The hardware and software the numbers come from."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> Optional[str]:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "transformers": ver("transformers"), "peft": ver("peft"),
            "python": platform.python_version(), "platform": platform.platform(), "host": platform.node(),
            "git": git_commit()}


def train_row(runner: Runner, lora: Runner, floor: Optional[Runner] = None) -> dict[str, Any]:
    s = runner.setting
    paired = [t / l for t, l in zip(runner.samples, lora.samples)]  # same round
    row = {"phase": "train", "label": s.label, "method": s.method, "kernel": s.kernel, "stride": s.stride,
           "impl": s.impl, "via": s.via if s.method == "dcft" else None, "method_params": runner.params,
           "trainable_params": runner.trainable,
           **spread(runner.samples, "step_s"), "step_s_all": runner.samples, "peak_mem_bytes": runner.peak_mem}
    row["ratio_to_lora"] = row["step_s_median"] / quantile(lora.samples, 0.5)
    row["ratio_to_lora_q1"], row["ratio_to_lora_q3"] = quantile(paired, 0.25), quantile(paired, 0.75)
    row["mem_ratio_to_lora"] = runner.peak_mem / lora.peak_mem if lora.peak_mem else None
    row["loss_step0"] = runner.loss_step0
    if floor is not None:  # overhead above the head-only step (backbone frozen, nothing injected)
        floor_s = quantile(floor.samples, 0.5)
        row["over_floor_s"] = row["step_s_median"] - floor_s
        row["ratio_to_floor"] = row["step_s_median"] / floor_s
    return row


def inference_row(runner: Runner, base: Runner) -> dict[str, Any]:
    s = runner.setting
    paired = [t / b for t, b in zip(runner.samples, base.samples)]
    row = {"phase": "inference", "label": s.label, "method": s.method, "kernel": s.kernel, "stride": s.stride,
           "impl": None, "merged": s.method == "dcft", **spread(runner.samples, "step_s"),
           "step_s_all": runner.samples, "peak_mem_bytes": runner.peak_mem,
           "ratio_to_lora": None, "mem_ratio_to_lora": None}
    row["ratio_to_base"] = row["step_s_median"] / quantile(base.samples, 0.5)
    row["ratio_to_base_q1"], row["ratio_to_base_q3"] = quantile(paired, 0.25), quantile(paired, 0.75)
    row["mem_ratio_to_base"] = runner.peak_mem / base.peak_mem if base.peak_mem else None
    return row


def checks(rows: list[dict[str, Any]], precision: str = "fp32") -> list[dict[str, Any]]:
    """The targets, each with its value, limit and outcome (loss equality at `precision`'s tolerance)."""
    loss_rtol = LOSS_RTOL[precision]
    out = []

    def add(name: str, value: Optional[float], limit: float) -> None:
        out.append({"check": name, "value": value, "limit": limit, "ok": value is not None and value <= limit})

    by_label = {r["label"]: r for r in rows}
    for r in rows:
        if r["phase"] == "train" and r["method"] == "dcft" and r["impl"] == "fast":
            limit = LIMIT_STRIDE_EQ_KERNEL if r["stride"] == r["kernel"] else LIMIT_OVERLAP
            add(f"{r['label']} step time / LoRA", r["ratio_to_lora"], limit)
            add(f"{r['label']} peak memory / LoRA", r["mem_ratio_to_lora"], limit)
            if r["via"] != "harness":  # the same setting through the harness nn.Linear layer
                harness = by_label.get(r["label"].removesuffix(f"-{r['via']}"))
                if harness is not None:
                    limit = LIMIT_PEFT if r["via"] == "peft" else LIMIT_CONV1D
                    add(f"{r['label']} step time / {harness['label']}",
                        r["step_s_median"] / harness["step_s_median"], limit)
                    diff = abs(r["loss_step0"] - harness["loss_step0"]) / max(abs(harness["loss_step0"]), 1e-12)
                    add(f"{r['label']} loss == {harness['label']} loss (relative difference)", diff, loss_rtol)
                continue
            ref = by_label.get(r["label"].replace("-fast", "-reference"))
            if ref is not None and r["loss_step0"] is not None and ref["loss_step0"] is not None:
                diff = abs(r["loss_step0"] - ref["loss_step0"]) / max(abs(ref["loss_step0"]), 1e-12)
                add(f"{r['label']} loss == reference loss (relative difference)", diff, loss_rtol)
        if r["phase"] == "inference" and r["method"] == "dcft":
            add(f"{r['label']} inference latency / base", r["ratio_to_base"], LIMIT_MERGED)
    return out


def run(model: str = DEFAULT_MODEL, device: str = "auto", batch: int = DEFAULT_BATCH, seq_len: int = DEFAULT_SEQ_LEN,
        repeats: int = DEFAULT_REPEATS, warmup: Optional[int] = None, compile: bool = False,
        threads: Optional[int] = None, layers: Optional[int] = None, seed: int = 0, lr: float = 1e-4,
        only: Optional[list[str]] = None, inference: bool = True, inference_repeats: Optional[int] = None,
        shapes: tuple[tuple[int, int], ...] = DCFT_SHAPES, precision: str = "fp32",
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Run the benchmark and return its result (see the module doc); writes nothing. `threads`
    sets torch's intra-op threads for the run (restored afterwards); `precision` "bf16" runs every
    forward pass under bfloat16 autocast."""
    if precision not in PRECISIONS:
        raise SystemExit(f"--precision {precision}: valid: {', '.join(PRECISIONS)}")
    if warmup is None:  # compiled graphs may be rebuilt on the second call (grads, optimizer state now exist)
        warmup = DEFAULT_WARMUP_COMPILED if compile else DEFAULT_WARMUP
    if repeats < 1 or warmup < 0:
        raise SystemExit("--repeats must be >= 1 and --warmup >= 0")
    inference_repeats = INFERENCE_REPEAT_FACTOR * repeats if inference_repeats is None else inference_repeats
    if inference_repeats < 1:
        raise SystemExit("--inference-repeats must be >= 1")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(model, device, batch, seq_len, repeats, warmup, compile, layers, seed, lr, only, inference,
                    inference_repeats, log, shapes, precision)
    finally:
        torch.set_num_threads(previous_threads)


def _run(model: str, device: str, batch: int, seq_len: int, repeats: int, warmup: int, compile: bool,
         layers: Optional[int], seed: int, lr: float, only: Optional[list[str]], inference: bool,
         inference_repeats: int, log: Callable[[str], None],
         shapes: tuple[tuple[int, int], ...] = DCFT_SHAPES, precision: str = "fp32") -> dict[str, Any]:
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # events, synchronisation and memory statistics of this device
    if compile:  # one compiled graph per model instance: keep dynamo from falling back to eager
        import torch._dynamo.config as dynamo_config

        for key in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                    "accumulated_recompile_limit"):
            if hasattr(dynamo_config, key):
                setattr(dynamo_config, key, max(getattr(dynamo_config, key), 256))
    started = time.perf_counter()
    load_start = load_average()
    cfg = model_config(model, layers)
    log(f"bench: {model} ({cfg['arch'].get('num_hidden_layers')} layers) on {dev}, batch {batch} x {seq_len} tokens, "
        f"{torch.get_num_threads()} threads, {precision}, {warmup} warm-up + {repeats} timed steps per setting"
        + (", torch.compile" if compile else ""))
    base = build_base(cfg, dev, seed)
    data = make_batch(base, batch, seq_len, dev, seed)

    settings = train_settings(shapes)
    if only:
        known = {s.label for s in settings + inference_settings()}
        unknown = sorted(set(only) - known)
        if unknown:
            raise SystemExit(f"--only: unknown settings {unknown}; valid: {', '.join(sorted(known))}")
        settings = [s for s in settings if s in (LORA, HEAD_ONLY) or s.label in only]

    trainers: list[Runner] = []
    for s in settings:
        t0 = time.perf_counter()
        runner = make_trainer(base, s, seed, lr, compile, precision)
        for i in range(warmup):
            torch.manual_seed(seed + 1)  # same dropout masks: fast and reference give the same first loss
            loss = train_step(runner, data)
            if i == 0:
                runner.loss_step0 = float(loss)
        if runner.loss_step0 is None:  # no warm-up: the first loss comes from the memory step
            torch.manual_seed(seed + 1)
        opt = runner.new_optimizer(lr)  # fresh: the optimizer state allocated in the step counts
        holder: dict[str, torch.Tensor] = {}
        runner.peak_mem = peak_memory(lambda: holder.setdefault("loss", train_step(runner, data, opt)), dev)
        if runner.loss_step0 is None:
            runner.loss_step0 = float(holder["loss"])
        del opt, holder
        log(f"  {s.label}: ready in {time.perf_counter() - t0:.1f} s (loss {runner.loss_step0:.6f}, "
            f"peak {runner.peak_mem / 2**20:.1f} MiB)")
        trainers.append(runner)
    run_rounds(trainers, lambda r: train_step(r, data), repeats, dev, log, "train")
    lora = trainers[0]
    floor = next(r for r in trainers if r.setting == HEAD_ONLY)
    rows = [train_row(r, lora, floor) for r in trainers]

    if inference:
        inferers: list[Runner] = []
        for s in inference_settings():
            if only and s.method != "base" and s.label not in only:
                continue
            runner = make_inferer(base, s, seed, compile, precision)
            for _ in range(warmup):
                infer_step(runner, data)
            runner.peak_mem = peak_memory(lambda: infer_step(runner, data), dev)
            inferers.append(runner)
        run_rounds(inferers, lambda r: infer_step(r, data), inference_repeats, dev, log, "inference")
        rows += [inference_row(r, inferers[0]) for r in inferers]

    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": dev.type,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model(),
        "model": model,
        "layers": cfg["arch"].get("num_hidden_layers"),
        "batch": batch,
        "seq_len": seq_len,
        "repeats": repeats,
        "inference_repeats": inference_repeats if inference else None,
        "warmup": warmup,
        "compile": compile,
        "precision": precision,
        "dtype": str(next(base.parameters()).dtype).removeprefix("torch."),
        "seed": seed,
        "timing": "CUDA events + synchronize" if dev.type == "cuda" else "time.perf_counter",
        "memory": ("torch.cuda.max_memory_allocated over one step (fresh optimizer) minus memory allocated before"
                   if dev.type == "cuda" else
                   "peak live bytes of torch's CPU allocator over one step (fresh optimizer), from the profiler"),
        "machine": machine(dev),
        "load_average": {"start": load_start, "end": load_average()},
        "argv": sys.argv,
        "wall_s": time.perf_counter() - started,
        "rows": rows,
        "checks": checks(rows, precision),
    }


# --- output ------------------------------------------------------------------------------------------------
def _mib(b: Optional[int]) -> str:
    return "—" if b is None else f"{b / 2**20:,.1f}"


def _x(v: Optional[float]) -> str:
    return "—" if v is None else f"{v:.2f}x"


def markdown(result: dict[str, Any]) -> str:
    """The result as Markdown tables (training, inference) and the target checks."""
    m = result["machine"]
    lines = [f"### Benchmark: {result['model']} ({result['layers']} layers), batch {result['batch']} x "
             f"{result['seq_len']} tokens, {result['device']} ({result['device_name']}), {m['threads']} threads, "
             f"{result.get('precision', 'fp32')}, torch {m['torch']}{', torch.compile' if result['compile'] else ''}",
             "",
             f"Median of {result['repeats']} interleaved steps after {result['warmup']} warm-up; IQR and min-max in "
             f"seconds; ratios to LoRA r=1 of the same run (per-round ratio IQR in brackets).",
             "",
             "| setting | impl | #params | step (s) | IQR | min-max | x LoRA | over floor (s) | peak mem (MiB) "
             "| mem x LoRA |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        if r["phase"] != "train":
            continue
        over = r.get("over_floor_s")
        lines.append(f"| {r['label']} | {r['impl'] or '—'} | {r['method_params']:,} | {r['step_s_median']:.3f} | "
                     f"{r['step_s_q1']:.3f}-{r['step_s_q3']:.3f} | {r['step_s_min']:.3f}-{r['step_s_max']:.3f} | "
                     f"{_x(r['ratio_to_lora'])} [{r['ratio_to_lora_q1']:.2f}-{r['ratio_to_lora_q3']:.2f}] | "
                     f"{'—' if over is None else f'{over:+.3f}'} | "
                     f"{_mib(r['peak_mem_bytes'])} | {_x(r['mem_ratio_to_lora'])} |")
    inf = [r for r in result["rows"] if r["phase"] == "inference"]
    if inf:
        lines += ["", f"Inference (forward only, no grad, eval mode), median of {result['inference_repeats']} "
                  "interleaved calls:", "",
                  "| model | latency (s) | IQR | min-max | x base | peak mem (MiB) | mem x base |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in inf:
            lines.append(f"| {r['label']} | {r['step_s_median']:.3f} | {r['step_s_q1']:.3f}-{r['step_s_q3']:.3f} | "
                         f"{r['step_s_min']:.3f}-{r['step_s_max']:.3f} | {_x(r['ratio_to_base'])} "
                         f"[{r['ratio_to_base_q1']:.2f}-{r['ratio_to_base_q3']:.2f}] | {_mib(r['peak_mem_bytes'])} | "
                         f"{_x(r['mem_ratio_to_base'])} |")
    if result["checks"]:
        lines += ["", "| target | value | limit | |", "|---|---:|---:|---|"]
        for c in result["checks"]:
            v = "—" if c["value"] is None else (f"{c['value']:.2e}" if "loss" in c["check"] else f"{c['value']:.3f}")
            lines.append(f"| {c['check']} | {v} | {c['limit']:g} | {'ok' if c['ok'] else 'MISSED'} |")
    load = result["load_average"]
    lines += ["", f"Load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}; "
              f"wall time {result['wall_s']:.0f} s."]
    return "\n".join(lines)


def default_path(result: dict[str, Any], root: str | Path = "results/bench") -> Path:
    name = f"{result['created'][:10]}-{result['device']}"
    if result.get("precision", "fp32") != "fp32":
        name += f"-{result['precision']}"
    if result["compile"]:
        name += "-compile"
    if result["model"] != DEFAULT_MODEL or result["layers"] != model_config(DEFAULT_MODEL)["arch"]["num_hidden_layers"]:
        name += f"-{result['model']}" + (f"-{result['layers']}l" if result["model"] == DEFAULT_MODEL else "")
    return Path(root) / f"{name}.json"


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m dcft.measure.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="conf/model name, built from config with random weights")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="sequences per step")
    ap.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, help="tokens per sequence")
    ap.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed steps per setting (round-robin)")
    ap.add_argument("--inference-repeats", type=int, default=None,
                    help=f"timed forward passes per inference model (default {INFERENCE_REPEAT_FACTOR} x --repeats)")
    ap.add_argument("--warmup", type=int, default=None,
                    help=f"untimed steps per setting first (default {DEFAULT_WARMUP}, "
                         f"{DEFAULT_WARMUP_COMPILED} with --compile)")
    ap.add_argument("--compile", action="store_true", help="torch.compile every model")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="fp32, or bf16: every forward pass under bfloat16 autocast (float32 weights)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--layers", type=int, default=None, help="override num_hidden_layers (quick checks)")
    ap.add_argument("--only", default=None,
                    help="comma-separated setting labels to run (LoRA r=1 and the base model always run)")
    ap.add_argument("--no-inference", action="store_true", help="skip the merged-inference rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shapes", default=None,
                    help="DCFT (kernel:stride) settings to time, e.g. 2:2,4:4,6:6,8:8,12:12 (default: "
                         + ",".join(f"{k}:{s}" for k, s in DCFT_SHAPES) + ")")
    ap.add_argument("--out", default=None, help="output JSON (default results/bench/<date>-<device>.json)")
    args = ap.parse_args(argv)
    shapes = parse_shapes(args.shapes) if args.shapes else DCFT_SHAPES
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    result = run(model=args.model, device=args.device, batch=args.batch, seq_len=args.seq_len, repeats=args.repeats,
                 warmup=args.warmup, compile=args.compile, threads=args.threads, layers=args.layers, seed=args.seed,
                 only=only, inference=not args.no_inference, inference_repeats=args.inference_repeats, shapes=shapes,
                 precision=args.precision)
    from dcft.report.results import atomic_write_json

    path = Path(args.out) if args.out else default_path(result)
    atomic_write_json(path, result)
    print(markdown(result))
    print(f"\nwritten: {path}")
    return result


if __name__ == "__main__":
    main()
