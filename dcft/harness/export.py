"""What a harness run trained, written as a peft adapter directory that leaves the harness.

`save_peft_adapter(model, method, dir)` writes `adapter_config.json` + `adapter_model.safetensors`
as peft's `save_pretrained` does, so `PeftModel.from_pretrained(fresh_base_model, dir)` rebuilds
the trained model (adapter and task head) with plain peft:

* DCFT (the harness's `DCFTLinear` layers): a `DcftConfig` (the run's hyperparameters, the exact
  adapted module names as `target_modules`) and the tensors under the tuner's names (`dcft_A`...).
* methods whose layers are peft's own (LoRA, LoRA-FA, AdaLoRA): their peft config and state dict.
* every other method (BitFit, bottleneck adapters, SoRA, full fine-tuning) has no peft format:
  `NotSavable` says so, and a run records the reason instead of files.

The task head (classifier / QA outputs / pooler, trained by every method) goes in as
`modules_to_save`, so a reloaded model reproduces the run's outputs. `RunAdapters` keeps a run's
best (at the best evaluation) and final adapters in `<run_dir>/adapter/{best,final}`, each saying what
it belongs to: `base_model_name_or_path` and `task_type` in `adapter_config.json`, the label names and
the run's identity hash in `run.json`.
In-house because this converts the harness's own layers; peft only saves models it built.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch
from torch import nn

ADAPTER_DIR = "adapter"  # <run_dir>/adapter/{best,final}: the run's adapters in peft format
PEFT_PREFIX = "base_model.model."  # how peft's save_pretrained names a PeftModel's tensors


class NotSavable(NotImplementedError):
    """The method has no peft adapter format (the message says why)."""


def head_modules(model: nn.Module, method) -> list[str]:
    """Names of the modules holding the task head's trained parameters (peft `modules_to_save`)."""
    return sorted({n.rpartition(".")[0] for n, _ in method.head_parameters(model)})


def peft_export(model: nn.Module, method) -> tuple[Any, dict[str, torch.Tensor]]:
    """(peft config, state dict with peft's saved names) of a harness-trained `model`."""
    from dcft.methods.dcft import DCFT, dcft_layers

    head = head_modules(model, method)
    params = dict(model.named_parameters())
    state = {PEFT_PREFIX + n: params[n].detach() for n, _ in method.head_parameters(model)}
    if isinstance(method, DCFT):
        from dcft.methods.dcft.tuner import DcftConfig

        cfg = method.cfg
        layers = dcft_layers(model)
        config = DcftConfig(kernel=cfg.kernel, stride=cfg.stride, rank=cfg.rank, alpha=cfg.alpha, r=cfg.r,
                            dropout=cfg.dropout, init=cfg.init, init_std=cfg.init_std, impl=cfg.impl,
                            reg_orth_coef=cfg.reg_orth_coef, target_modules=[n for n, _ in layers],
                            modules_to_save=head or None)
        for name, layer in layers:
            for x in "ABC":
                state[f"{PEFT_PREFIX}{name}.dcft_{x}"] = getattr(layer, x).detach()
        return config, state
    from peft.tuners.tuners_utils import BaseTunerLayer

    configs = getattr(model, "peft_config", None)
    if configs and any(isinstance(m, BaseTunerLayer) for m in model.modules()):
        from peft import get_peft_model_state_dict

        from dcft.methods.lora import ADAPTER

        original = configs[ADAPTER]
        config = copy.deepcopy(original)
        config.modules_to_save = head or None
        config.inference_mode = True
        if getattr(config, "rank_pattern", None) is not None and hasattr(config, "total_step"):
            # AdaLoRA after rank allocation: its pruned singular values are zero in lora_E, so the
            # full-rank tensors without a rank pattern give the same function (peft's own resizing
            # needs the AdaLoraModel wrapper and rewrites the live config)
            config.rank_pattern = None
        configs[ADAPTER] = config  # what get_peft_model_state_dict reads; the run's config stays untouched
        try:
            adapter = get_peft_model_state_dict(model, adapter_name=ADAPTER)
        finally:
            configs[ADAPTER] = original
        state.update({PEFT_PREFIX + k: v.detach() for k, v in adapter.items()})
        return config, state
    raise NotSavable(f"method {method.name!r} has no peft adapter format (peft has no such tuner); its trained "
                     f"weights are not exported")


RUN_FILE = "run.json"  # beside a run's adapter: the run it comes from and its label names


def save_peft_adapter(model: nn.Module, method, directory: str | Path, describe: dict[str, Any] | None = None) -> Path:
    """Write `adapter_config.json` and `adapter_model.safetensors` to `directory` (replaced
    whole, so a reader never sees a mix of two saves). Raises `NotSavable`.

    `describe` makes the adapter self-describing: `base_model_name_or_path` (the backbone's Hub id or
    folder) and `task_type` (peft's "SEQ_CLS" / "QUESTION_ANS") go into `adapter_config.json`, and
    `run.json` gets the label names (`id2label`, `label2id`) and `run` (the run's identity hash,
    model, task, method, score key)."""
    import json

    from safetensors.torch import save_file

    config, state = peft_export(model, method)
    describe = describe or {}
    for key in ("base_model_name_or_path", "task_type"):
        if describe.get(key) is not None:
            setattr(config, key, describe[key])
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config.save_pretrained(str(tmp))
    if describe:
        id2label = {str(i): n for i, n in (describe.get("id2label") or {}).items()}
        about = {**(describe.get("run") or {}), "base_model_name_or_path": describe.get("base_model_name_or_path"),
                 "task_type": describe.get("task_type"), "id2label": id2label or None,
                 "label2id": {n: int(i) for i, n in id2label.items()} or None}
        (tmp / RUN_FILE).write_text(json.dumps(about, indent=2) + "\n", encoding="utf-8")
    save_file({k: v.to("cpu").contiguous() for k, v in state.items()}, str(tmp / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


class RunAdapters:
    """A run's best and final adapters, `<run_dir>/adapter/best` and `.../final` (main process only)."""

    def __init__(self, method, run_dir: Path | str | None, enabled: bool = True, describe: dict[str, Any] | None = None):
        self.method = method
        self.describe = describe  # what each saved adapter says about itself (`save_peft_adapter`)
        self.root = Path(run_dir) / ADAPTER_DIR if run_dir is not None else None
        self.enabled = enabled and self.root is not None
        self.reason: Optional[str] = None  # why nothing is saved, for result.json
        self.saved: dict[str, str] = {}

    def _save(self, which: str, model: nn.Module) -> None:
        if not self.enabled or self.reason is not None:
            return
        try:
            save_peft_adapter(model, self.method, self.root / which, self.describe)
        except NotSavable as e:
            self.reason = str(e)
            return
        self.saved[which] = f"{ADAPTER_DIR}/{which}"

    def save_best(self, model: nn.Module) -> None:
        """Called at each new best dev evaluation."""
        self._save("best", model)

    def save_final(self, model: nn.Module) -> None:
        """Called once training ends."""
        self._save("final", model)

    def info(self) -> dict[str, Any]:
        """For result.json: where the adapters are (relative to the run folder) or why there are none."""
        if self.reason is not None:
            return {"format": None, "reason": self.reason}
        return {"format": "peft", "dir": str(self.root), **self.saved}  # dir: for the run summary


def load_run_adapter(run_dir: str | Path, which: str = "best"):
    """The model a run trained, rebuilt from its result.json config and `adapter/<which>` with plain
    peft (`PeftModel.from_pretrained`), in eval mode; also returns the task. The backbone is loaded
    (or, for `model.source=config`, rebuilt with the run's seed) exactly as the run built it."""
    import dcft  # noqa: F401  (registers DCFT with peft)
    from omegaconf import OmegaConf
    from peft import PeftModel

    from dcft.report import results
    from dcft.harness.models import get_model
    from dcft.tasks import build_task

    run_dir = Path(run_dir)
    record = results.read_result(run_dir)
    if record is None:
        raise FileNotFoundError(f"{run_dir} has no result file")
    adapter = run_dir / ADAPTER_DIR / which
    if not (adapter / "adapter_config.json").is_file():
        why = (record.get("adapter") or {}).get("reason") or "no adapter was saved"
        raise FileNotFoundError(f"{adapter} holds no adapter ({why})")
    cfg = OmegaConf.create(record["config"])
    task = build_task(cfg.task, cfg.data)
    base = get_model(cfg.model, head=task.head, num_labels=task.num_labels, cls_dropout=cfg.train.cls_dropout,
                     seed=cfg.seed)
    return PeftModel.from_pretrained(base, str(adapter)).eval(), task


class AdapterEval(NamedTuple):
    """A saved adapter evaluated again: its dev score, which metric of which set that is, all metrics."""

    score: float  # the dev score (the task's main metric on its dev set; result-file scale, GLUE a fraction)
    key: str  # the metrics key of `score`, e.g. "validation/accuracy": the set and the metric
    metrics: dict[str, float]  # every metric of every evaluation set (held-out slice too, if the run had one)

    @property
    def set(self) -> str:
        """The evaluation set `score` is on, as a person names it ("dev")."""
        from dcft.units import set_name

        return set_name(self.key.rpartition("/")[0])


def evaluate_run_adapter(run_dir: str | Path, which: str = "best") -> AdapterEval:
    """`(score, key, metrics)` of a run's saved adapter on the run's evaluation data, through the same
    `dcft.harness.train.evaluate` the run used: `score` is the dev score (`key` names set and metric, e.g.
    "validation/accuracy"), the run's recorded best (or final) dev score, also for a run that chose its
    best step on a held-out slice (`data.holdout`; that score is in `metrics` under "holdout/...")."""
    from accelerate import Accelerator
    from omegaconf import OmegaConf

    from dcft.report import results
    from dcft.harness.models import load_tokenizer
    from dcft.harness.train import evaluate, make_loaders

    model, task = load_run_adapter(run_dir, which)
    cfg = OmegaConf.create(results.read_result(run_dir)["config"])
    data = task.load(load_tokenizer(cfg.model), cfg.train.max_len, limit=cfg.data.limit_train, seed=cfg.seed,
                     limit_eval=cfg.data.limit_eval)
    _, loaders = make_loaders(data, cfg.train.batch_size, cfg.train.eval_batch_size, cfg.seed)
    accelerator = Accelerator(cpu=True)
    metrics = evaluate(model, task, data, loaders, accelerator, None)
    key = results.dev_key(task.name)
    return AdapterEval(metrics[key], key, metrics)



# --- a DCFT adapter as a standard peft LoRA adapter ----------------------------------------------------
LORA_TASK_CLASSES = {  # peft task_type -> the transformers Auto class whose module names the adapter uses
    "SEQ_CLS": "AutoModelForSequenceClassification", "CAUSAL_LM": "AutoModelForCausalLM",
    "TOKEN_CLS": "AutoModelForTokenClassification", "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM", "FEATURE_EXTRACTION": "AutoModel", None: "AutoModel",
}


@dataclass
class LoraExport:
    """What `export_lora` wrote and the parameter counts of both forms."""

    directory: Path  # the LoRA adapter directory
    rank: int  # the LoRA's rank r = k*d (the largest, with a kernel_pattern)
    dcft: int  # DCFT's A, B, C
    lora: int  # LoRA's lora_A, lora_B
    shared: int  # what both carry unchanged: the modules_to_save head, trained biases

    def summary(self) -> str:
        return (f"DCFT adapter: {self.dcft:,} parameters -> LoRA of rank {self.rank}: {self.lora:,} parameters "
                f"({self.lora / self.dcft:.1f}x); head and trained biases, the same in both: {self.shared:,}; "
                f"written to {self.directory}")


def _numel(state: dict[str, torch.Tensor], keep) -> int:
    return sum(v.numel() for k, v in state.items() if keep(k))


def resolve_adapter_dir(source: str | Path, which: str = "best") -> tuple[Path, Optional[Path]]:
    """(adapter directory, run directory or None): `source` is a peft adapter directory, or a
    harness run directory whose `adapter/<which>` is one."""
    source = Path(source)
    if (source / "adapter_config.json").is_file():
        return source, None
    adapter = source / ADAPTER_DIR / which
    if (adapter / "adapter_config.json").is_file():
        return adapter, source
    raise FileNotFoundError(f"{str(source)!r} is neither a peft adapter directory (no adapter_config.json) nor a "
                            f"run directory with {ADAPTER_DIR}/{which}/adapter_config.json")


def base_on_meta(config, base_model=None, run_dir: Optional[Path] = None) -> nn.Module:
    """The base model an adapter was trained on, built on the meta device (no weights, no memory)
    to read its module types: from a run's `result.json`, else `base_model` (a model, used as is, or
    a local directory / Hub id), else the adapter's `base_model_name_or_path`."""
    if run_dir is not None and base_model is None:
        from omegaconf import OmegaConf

        from dcft.report import results
        from dcft.harness.models import build_model
        from dcft.tasks import build_task

        record = results.read_result(run_dir)
        if record is None:
            raise FileNotFoundError(f"{run_dir} has no result file to rebuild its model from")
        cfg = OmegaConf.create(record["config"])
        task = build_task(cfg.task, cfg.data)
        return build_model(cfg.model, head=task.head, num_labels=task.num_labels, device="meta")
    if isinstance(base_model, nn.Module):
        return base_model
    source = base_model or config.base_model_name_or_path
    if not source:
        raise ValueError("the adapter does not name its base model (base_model_name_or_path is empty): pass "
                         "base_model= (--base-model), a local model directory or Hub id")
    import transformers

    auto = getattr(transformers, LORA_TASK_CLASSES.get(config.task_type, "AutoModel"))
    try:
        model_config = transformers.AutoConfig.from_pretrained(str(source))
    except OSError as e:
        raise FileNotFoundError(f"cannot read the base model's config from {str(source)!r} ({e.__class__.__name__}); "
                                f"pass base_model= (--base-model) as a local model directory") from e
    with torch.device("meta"):
        return auto.from_config(model_config)


def conv1d_modules(model: nn.Module, names: list[str]) -> frozenset[str]:
    """Which of the adapted modules are GPT-2 `Conv1D` layers (LoRA's fan_in_fan_out); each name must
    be a module of `model` (else the adapter belongs to another model)."""
    from dcft.harness.models import is_conv1d

    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"the base model has no module {missing[0]!r} (and {len(missing) - 1} more) that the "
                         f"adapter adapts: pass the base model it was trained on (base_model= / --base-model)")
    return frozenset(n for n in names if is_conv1d(modules[n]))


def export_lora(source, out: str | Path, adapter_name: str = "default", which: str = "best",
                base_model=None) -> LoraExport:
    """Write a DCFT adapter as a standard peft LoRA adapter (`adapter_config.json` with a `LoraConfig`,
    `adapter_model.safetensors`) that plain peft loads without `import dcft`: rank k*d, alpha = rank,
    the same function exactly (`dcft.methods.dcft.tuner.lora_from_state`), head and biases carried over.

    `source`: a `PeftModel` with DCFT adapter `adapter_name`; or a DCFT adapter directory written by
    `save_pretrained`; or a harness run directory (its `adapter/<which>`). For a directory the base
    model is only built on the meta device, to tell GPT-2's Conv1D layers from nn.Linear (see
    `base_on_meta` for where it comes from). `out` is replaced whole."""
    from dcft.methods.dcft.tuner import lora_from_state, to_lora  # (registers DCFT with peft: PeftConfig reads it)
    from dcft.methods.dcft.tuner.model import PEFT_PREFIX as prefix, _adapter_tensor

    if isinstance(source, nn.Module):
        lora_config, state = to_lora(source, adapter_name)
        from peft import get_peft_model_state_dict

        dcft_state = get_peft_model_state_dict(source, adapter_name=adapter_name, save_embedding_layers=False)
    else:
        from peft import PeftConfig
        from safetensors.torch import load_file

        directory, run_dir = resolve_adapter_dir(source, which)
        config = PeftConfig.from_pretrained(str(directory))
        if config.peft_type != "DCFT":
            kind = getattr(config.peft_type, "value", config.peft_type)
            raise ValueError(f"{directory} holds a {kind} adapter, not a DCFT one: nothing to convert")
        weights = directory / "adapter_model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{directory} has no adapter_model.safetensors")
        dcft_state = load_file(str(weights))
        names = sorted({found[0] for k in dcft_state if (found := _adapter_tensor(k))})
        conv1d = conv1d_modules(base_on_meta(config, base_model, run_dir), names)
        lora_config, state = lora_from_state(config, dcft_state, conv1d)
    is_lora = lambda k: k.startswith(prefix) and k.endswith((".lora_A.weight", ".lora_B.weight"))  # noqa: E731
    return LoraExport(_write_adapter(lora_config, state, Path(out)), rank=lora_config.r,
                      dcft=_numel(dcft_state, lambda k: _adapter_tensor(k) is not None),
                      lora=_numel(state, is_lora), shared=_numel(state, lambda k: not is_lora(k)))


def _write_adapter(config, state: dict[str, torch.Tensor], directory: Path) -> Path:
    """`adapter_config.json` + `adapter_model.safetensors` in `directory`, replaced whole (written
    beside it, then renamed). An existing directory that is not an adapter is refused."""
    from safetensors.torch import save_file

    if directory.exists() and any(directory.iterdir()) and not (directory / "adapter_config.json").is_file():
        raise FileExistsError(f"{str(directory)!r} exists and is not an adapter directory; choose a new one")
    if any(v.is_meta for v in state.values()):
        raise ValueError("the adapter's tensors are on the meta device: there are no values to write")
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config.save_pretrained(str(tmp))
    save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()},
              str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m dcft.harness.export --to-lora SOURCE OUT`: a DCFT adapter (directory, or run directory) as a
    standard peft LoRA adapter; prints both sizes."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dcft.harness.export", description=main.__doc__)
    parser.add_argument("--to-lora", nargs=2, metavar=("SOURCE", "OUT"), required=True,
                        help="SOURCE: a DCFT adapter directory or a run directory (its adapter/<which>); "
                             "OUT: the LoRA adapter directory to write (replaced)")
    parser.add_argument("--which", default="best", choices=("best", "final"),
                        help="for a run directory: its best (default) or final adapter")
    parser.add_argument("--base-model", default=None,
                        help="the base model (local directory or Hub id), when the adapter does not name one "
                             "(read on the meta device, to tell Conv1D from nn.Linear layers)")
    args = parser.parse_args(argv)
    source, out = args.to_lora
    try:
        result = export_lora(source, out, which=args.which, base_model=args.base_model)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
