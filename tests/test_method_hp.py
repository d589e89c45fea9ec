"""Each baseline with its own published settings: composed configs against the source scripts'
numbers, typed here by hand from those scripts (the oracle), not read from conf/; a baseline without
settings of its own is an error, not a silent run on DCFT's preset.

Sources (read-only mirrors, never at test time): microsoft/DeBERTa@4d7fe0b experiments/glue/rte.sh,
mnli.sh, cola.sh; TsinghuaC3I/SoRA@c275ac2 scripts/run_glue_sora_no_schedule.sh, run_glue_lora.sh,
run_glue_bitfit.sh, run_glue_adapter.sh, config/lora_config.json and src/lora.py; thunlp/OpenDelta
opendelta/delta_models/adapter.py (AdapterModel, the adapter SoRA's script inserts); microsoft/LoRA@c4593f0
examples/NLU/roberta_large_rte.sh and deberta_v2_xxlarge_*.sh; facebookresearch/fairseq@1ffc48f
examples/roberta/README.glue.md; QingruZhang/AdaLoRA@d10f5eb NLU/scripts/run_debertav3_cola.sh.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from dcft.methods import build_method
from dcft.methods.bottleneck import Bottleneck
from dcft.harness.models import build_model
from dcft.harness.reuse import MethodHpMissing, hp_sources

METHOD_HP = ROOT / "conf" / "method_hp" / "own"


def _cfg(*overrides: str):
    return compose_cfg(list(overrides), return_hydra_config=True)


def _method_hp_file(cfg) -> Path:
    return ROOT / "conf" / "method_hp" / f"{cfg.hydra.runtime.choices['method_hp@_global_']}.yaml"


def test_full_finetuning_of_deberta_v3_base_on_rte_gets_its_sources_rate():
    cfg = _cfg("method=full", "task=rte")
    # DeBERTa repository rte.sh, base block: 6 epochs, warmup 100, lr 2e-5, cls_drop_out 0.2
    assert cfg.train.lr == pytest.approx(2e-5)
    assert (cfg.train.epochs, cfg.train.warmup_steps, cfg.train.cls_dropout) == (6, 100, 0.2)
    assert cfg.train.weight_decay == 0.01 and cfg.train.adam_eps == 1e-6  # DeBERTa/optims/args.py defaults
    assert cfg.train.batch_size == 32 and cfg.train.max_len == 320  # the dataset's (preset), paper App. E


def test_sora_gets_its_reference_settings():
    cfg = _cfg("method=sora", "task=stsb")
    t, m = cfg.train, cfg.method
    assert t.lr == pytest.approx(8e-4) and t.epochs == 20
    assert (t.max_grad_norm, t.weight_decay, t.warmup_ratio, t.warmup_steps) == (0.1, 0.1, 0.06, 0)
    assert (m.r, m.alpha, m.sparse_lambda, m.sparse_lambda_2, m.targets) == (8, 16.0, 10.0, 3e-4, "all")


def test_roberta_large_lora_runs_r8_on_query_and_value():
    cfg = _cfg("model=roberta-large", "method=lora", "task=rte")
    assert (cfg.method.r, cfg.method.alpha, cfg.method.targets) == (8, 16.0, "qv")
    assert cfg.train.lr == pytest.approx(4e-4) and cfg.train.epochs == 20 and cfg.train.warmup_ratio == 0.06
    # the count the paper's 0.8M cell describes: 24 layers x {Q, V} x r 8 x (1024 + 1024)
    assert _count(cfg) == 24 * 2 * 8 * (1024 + 1024) == 786_432


def test_deberta_v2_xxlarge_lora_runs_r16_on_query_and_value():
    cfg = _cfg("model=deberta-v2-xxlarge", "method=lora", "task=cola")
    assert (cfg.method.r, cfg.method.alpha, cfg.method.targets) == (16, 32.0, "qv")
    assert cfg.train.lr == pytest.approx(1.3e-4) and cfg.train.epochs == 10 and cfg.train.warmup_steps == 100
    assert _count(cfg) == 48 * 2 * 16 * (1536 + 1536) == 4_718_592  # paper 4.7M


def test_roberta_large_full_finetuning_follows_fairseq():
    cfg = _cfg("model=roberta-large", "method=full", "task=rte")
    t = cfg.train
    assert t.lr == pytest.approx(2e-5) and t.epochs == 10 and t.warmup_ratio == pytest.approx(122 / 2036, abs=1e-4)
    assert (t.weight_decay, t.adam_beta2, t.adam_eps, t.max_grad_norm) == (0.1, 0.98, 1e-6, 0.0)


def test_adalora_takes_its_per_task_schedule():
    cfg = _cfg("method=adalora", "task=cola")
    m = cfg.method
    assert (m.init_r, m.target_r, m.lora_alpha, m.orth_reg_weight) == (3, 1, 32.0, 0.1)
    assert (m.tinit, m.tfinal, m.deltaT) == (800, 3500, 10)
    assert cfg.train.lr == pytest.approx(8e-4) and cfg.train.max_len == 64


def test_command_line_wins_over_the_method_file():
    cfg = _cfg("model=roberta-large", "method=lora", "task=rte", "targets=all", "train.lr=1e-4", "method.r=2")
    assert (cfg.method.targets, cfg.train.lr, cfg.method.r) == ("all", 1e-4, 2)


def test_shared_gives_every_method_the_dcft_preset():
    cfg = _cfg("method=full", "task=rte", "baseline_hp=shared")
    assert cfg.train.lr == pytest.approx(1.2e-3) and cfg.train.epochs == 50  # the authors' DCFT RTE script


def test_dcft_has_no_method_file():
    cfg = _cfg("method=dcft", "task=rte")
    assert not _method_hp_file(cfg).exists()
    assert cfg.train.lr == pytest.approx(1.2e-3)


@pytest.mark.parametrize("model,method,task,count", [
    ("deberta-v3-base", "lora", "squad", 12 * (4 * (768 + 768) + 2 * (768 + 3072))),  # r 1 on ALL
    ("deberta-v3-base", "hadapter", "squad_v2", 24 * (2 * 768 * 4 + 4 + 768)),  # m = 4
    ("deberta-v3-base", "padapter", "squad", 12 * (2 * 768 * 8 + 8 + 768)),  # m = 8
])
def test_table3_baselines_are_sized_for_the_008_percent_budget(model, method, task, count):
    cfg = _cfg(f"model={model}", f"method={method}", f"task={task}")
    got = _count(cfg, head="qa")
    assert got == count
    total = 183_833_090  # DeBERTaV3-base with its QA head
    assert 0.0007 < got / total < 0.00091  # 0.08 % up to the nearest integer size


def _count(cfg, head: str = "classification") -> int:
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), head=head, num_labels=2, device="meta")
    method = build_method(cfg.method)
    method.apply(model)
    return method.count(model).method


BASELINE_SWEEPS = ["table1_baselines_deberta", "table1_baselines_roberta", "table2_baselines", "table3_baselines",
                   "table4_full"]


@pytest.mark.parametrize("sweep", BASELINE_SWEEPS)
def test_every_baseline_sweep_point_traces_to_a_cited_source(sweep):
    params = OmegaConf.load(ROOT / "conf" / "sweep" / f"{sweep}.yaml").hydra.sweeper.params
    tasks = str(params.task).split(",")
    for method in str(params.method).split(","):
        cfg = _cfg(f"model={params.model}", f"task={tasks[0]}", f"method={method}")  # composition picks the file
        assert _method_hp_file(cfg) == METHOD_HP / str(params.model) / method / f"{tasks[0]}.yaml"
        for task in tasks:
            path = METHOD_HP / str(params.model) / method / f"{task}.yaml"
            assert path.exists(), (sweep, task, method)
            head = path.read_text(encoding="utf-8")
            assert "# Source: " in head, path
            assert any(s in head for s in ("@", "paper", "no source", "no SQuAD")), path  # repo@commit or a paper


def test_files_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("method_hp", ROOT / "scripts" / "method_hp.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen  # dataclasses look their module up while the file executes
    spec.loader.exec_module(gen)
    planned = gen.planned_files()
    # minilm's files are the CPU study's, written by scripts/cpu_study.py (tests/scripts/test_cpu_study.py)
    on_disk = ({p for p in METHOD_HP.rglob("*.yaml") if p.relative_to(METHOD_HP).parts[0] != "minilm"}
               | set((ROOT / "conf" / "sweep").glob("*_lr_*.yaml")))
    assert on_disk == set(planned)
    for path, text in planned.items():
        assert path.read_text(encoding="utf-8") == text, path


# ---- a baseline without its own settings never falls back to DCFT's preset unasked ------------------
def _run_py(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_missing_method_file_is_an_error_naming_the_file_and_the_opt_in(tmp_path: Path):
    """BitFit has no RoBERTa-large settings (the paper has no such row): it must not train on DCFT's
    RTE preset (lr 1.2e-3, 50 epochs) silently, and the refusal leaves no folder."""
    out = tmp_path / "runs"
    p = _run_py(["model=roberta-large", "method=bitfit", "task=rte", f"output_root={out}"], tmp_path)
    assert p.returncode == 1, p.stderr[-2000:]
    assert p.stderr.startswith("error: MethodHpMissing") or p.stderr.startswith("error: method=bitfit"), p.stderr
    assert "conf/method_hp/own/roberta-large/bitfit/rte.yaml" in p.stderr and "baseline_hp=shared" in p.stderr
    assert "conf/hp/authors/roberta-large/rte.yaml" in p.stderr  # what it would have trained on
    assert "Traceback" not in p.stderr
    assert not out.exists() or not any(out.rglob("*"))


def _choices(*overrides: str) -> dict:
    return OmegaConf.to_container(_cfg(*overrides).hydra.runtime.choices)


def test_missing_method_file_names_the_methods_that_have_one():
    with pytest.raises(MethodHpMissing) as e:
        hp_sources(_choices("model=roberta-large", "method=bitfit", "task=rte"))
    msg = str(e.value)
    assert "method=bitfit" in msg and "model=roberta-large task=rte" in msg
    assert "full, hadapter, lora, lorafa, padapter" in msg  # the RoBERTa-large baselines of Table 1


@pytest.mark.parametrize("overrides", [
    ("model=roberta-large", "method=bitfit", "task=rte", "baseline_hp=shared"),  # the opt-in
    ("model=roberta-large", "method=dcft", "task=rte"),  # the preset is DCFT's own
    ("model=tiny-bert", "method=bitfit", "task=rte", "preset=none"),  # no preset: generic defaults by choice
    ("model=roberta-large", "method=bitfit", "task=rte", "preset=none"),
])
def test_no_error_where_the_preset_is_chosen_or_absent(overrides):
    sources = hp_sources(_choices(*overrides))
    assert sources["method_hp@_global_"] is None


def test_shared_opt_in_trains_the_baseline_on_dcfts_preset():
    cfg = _cfg("model=roberta-large", "method=bitfit", "task=rte", "baseline_hp=shared")
    assert cfg.train.lr == pytest.approx(1.2e-3) and cfg.train.epochs == 50  # the DCFT repository's COMMANDL RTE


# ---- where a run differs from its source, the file says so (facts typed from the source scripts) ----
def _head(model: str, method: str, task: str) -> str:
    text = (METHOD_HP / model / method / f"{task}.yaml").read_text(encoding="utf-8")
    return " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))


def test_deberta_v3_lora_states_its_scaling_against_the_sources():
    """SoRA's run_glue_lora.sh: --lora_r 16, config/lora_config.json lora_alpha 16 (scaling 1)."""
    cfg = _cfg("method=lora", "task=rte")
    assert (cfg.method.r, cfg.method.alpha) == (1, 2.0)  # scaling 2
    head = _head("deberta-v3-base", "lora", "rte")
    assert "r 16 with lora_alpha 16, scaling alpha / r = 1" in head and "scaling 2" in head
    assert "method.alpha=1 runs the source's scaling" in head
    assert _cfg("method=lora", "task=rte", "method.alpha=1").method.alpha == 1.0


def test_hadapter_states_opendeltas_activation_and_offers_it():
    """OpenDelta's AdapterModel (SoRA's run_glue_adapter.sh) defaults to non_linearity 'gelu_new'."""
    head = _head("deberta-v3-base", "hadapter", "cola")
    assert "gelu_new" in head and "activation SiLU" in head and "method.activation=gelu_new" in head
    assert _cfg("method=hadapter", "task=cola").method.activation == "silu"  # the AdaLoRA code's Houlsby adapter
    cfg = _cfg("model=tiny-bert", "preset=none", "method=hadapter", "method.activation=gelu_new")
    method = build_method(cfg.method)
    x = torch.linspace(-4, 4, 41)
    gelu_new = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))  # transformers' gelu_new
    act = Bottleneck(4, 2, method.cfg.activation, 0.02).act
    assert torch.allclose(act(x), gelu_new, atol=1e-6)
    assert not torch.allclose(torch.nn.functional.silu(x), gelu_new, atol=1e-3)


def test_padapter_is_not_attributed_to_a_script_without_a_pfeiffer_adapter():
    """SoRA's run_glue_adapter.sh inserts OpenDelta's Houlsby-placed adapter only."""
    head = _head("deberta-v3-base", "padapter", "cola")
    source = head.split("Source: ", 1)[1]
    assert source.startswith("no published Pfeiffer-adapter script for DeBERTaV3-base was found")
    assert "adapter_type pfeiffer" in source and "optimiser settings are borrowed" in source


def test_bitfit_header_gives_the_scripts_batch_and_length():
    """SoRA's run_glue_bitfit.sh: bsz=100, --max_seq_length 256; here the preset's batch 32."""
    head = _head("deberta-v3-base", "bitfit", "rte")
    assert "batch 100 and max length 256" in head and "batch 8" not in head
    cfg = _cfg("method=bitfit", "task=rte")
    assert (cfg.train.batch_size, cfg.train.max_len) == (32, 320)  # the dataset's (the authors' DCFT RTE script)


@pytest.mark.parametrize("model,method,task", [
    ("deberta-v3-base", "full", "mnli"),  # DeBERTa mnli.sh deberta-v3-base block: --fp16 True
    ("roberta-large", "full", "rte"),  # fairseq README.glue.md: --fp16
    ("deberta-v2-xxlarge", "full", "cola"),  # DeBERTa cola.sh xxlarge-v2 block: --fp16 True
    ("deberta-v2-xxlarge", "lora", "sst2"),  # LoRA deberta_v2_xxlarge_sst2.sh: --fp16
])
def test_sources_that_train_in_fp16_say_so(model, method, task):
    head = _head(model, method, task)
    assert "fp16" in head and "here fp32" in head and "train.mixed_precision=fp16" in head
    assert _cfg(f"model={model}", f"method={method}", f"task={task}").train.mixed_precision == "no"


@pytest.mark.parametrize("preset,task,expect", [
    # Table 9, RTE: "Dropout" 0.3, "gamma" 0.2; the scripts' cls_dropout for RTE is 0.2
    ("paper", "rte", {"cls_dropout": 0.2, "reg_orth_coef": 0.3, "epochs": 50}),
    ("paper_literal", "rte", {"cls_dropout": 0.3, "reg_orth_coef": 0.2, "epochs": 50}),
    # Table 10, v2.0: "r" 12 = AdaLoRA's epochs; literal: r = 12 as the scaling denominator, 24 epochs
    ("paper", "squad_v2", {"epochs": 12, "r": 2.0, "alpha": 16.0}),
    ("authors", "squad_v2", {"epochs": 12, "r": 2.0, "alpha": 16.0}),
    ("paper_literal", "squad_v2", {"epochs": 24, "r": 12.0}),
    ("paper", "squad", {"epochs": 10, "r": 2.0}),
    ("paper_literal", "squad", {"epochs": 25, "r": 10.0}),
])
def test_presets_name_their_reading_of_tables_9_and_10(preset, task, expect):
    cfg = _cfg(f"preset={preset}", f"task={task}")
    got = {"cls_dropout": cfg.train.cls_dropout, "epochs": cfg.train.epochs, **cfg.dcft_hp}
    assert {k: got[k] for k in expect} == expect


def test_authors_deberta_presets_say_they_are_adalora_scripts():
    for path in (ROOT / "conf" / "hp" / "authors" / "deberta-v3-base").glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        if "squad" in path.stem:
            assert "AdaLoRA SQuAD script" in text
        else:
            assert "byte-identical to AdaLoRA's own script" in text and "--beta1/--beta2" in text, path
