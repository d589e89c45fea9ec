"""Every model x task x method composes; typos and wrong types are rejected; presets apply."""

from __future__ import annotations

import itertools

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from conftest import ROOT, compose_cfg

MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
TASKS = sorted(p.stem for p in (ROOT / "conf" / "task").glob("*.yaml"))
METHODS = sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml"))


def test_groups_are_complete():
    assert {"deberta-v3-base", "roberta-large", "deberta-v2-xxlarge", "minilm"} <= set(MODELS)
    assert set(TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "squad", "squad_v2"}
    assert set(METHODS) == {"dcft", "lora", "adalora", "sora", "lorafa", "bitfit", "hadapter", "padapter", "full"}


def _composes(model: str, task: str, method: str) -> None:
    cfg = compose_cfg([f"model={model}", f"task={task}", f"method={method}"])
    OmegaConf.resolve(cfg)
    assert cfg.model.name == model and cfg.task.name == task and cfg.method.name == method


@pytest.mark.parametrize("model,task", list(itertools.product(MODELS, TASKS)))
def test_every_model_task_composes_with_dcft(model, task):
    """Model x task is where presets interact (conf/hp/<preset>/<model>/<task>.yaml)."""
    _composes(model, task, "dcft")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model,task", [("deberta-v3-base", "mnli"), ("roberta-large", "stsb"), ("minilm", "squad_v2")])
def test_every_method_composes(model, task, method):
    _composes(model, task, method)


@pytest.mark.slow
@pytest.mark.parametrize("model,task", list(itertools.product(MODELS, TASKS)))
def test_every_model_task_method_composes(model, task):
    for method in METHODS:
        _composes(model, task, method)


def test_top_level_keys_reach_the_method():
    cfg = compose_cfg(["method=dcft", "kernel=4", "stride=2", "targets=qv"])
    assert (cfg.method.kernel, cfg.method.stride, cfg.method.targets) == (4, 2, "qv")


def test_authors_preset_is_default_and_paper_preset_selectable():
    authors = compose_cfg(["model=deberta-v3-base", "task=rte"])
    assert authors.train.lr == pytest.approx(1.2e-3) and authors.train.max_len == 320
    assert authors.method.reg_orth_coef == pytest.approx(0.3) and authors.method.r == 2.0
    paper = compose_cfg(["model=deberta-v3-base", "task=rte", "preset=paper"])  # Table 9 as the scripts read it
    assert paper.method.reg_orth_coef == pytest.approx(0.3) and paper.method.r == 8.0
    assert paper.train.cls_dropout == pytest.approx(0.2)
    literal = compose_cfg(["model=deberta-v3-base", "task=rte", "preset=paper_literal"])  # Table 9 as printed
    assert literal.method.reg_orth_coef == pytest.approx(0.2) and literal.train.cls_dropout == pytest.approx(0.3)


def test_model_without_preset_keeps_train_defaults():
    cfg = compose_cfg(["model=tiny-bert", "task=rte"])
    assert cfg.train.lr == pytest.approx(5e-4) and cfg.train.max_len == 128
    cfg = compose_cfg(["model=minilm", "task=rte", "preset=none"])
    assert cfg.train.lr == pytest.approx(5e-4) and cfg.train.max_len == 128


@pytest.mark.parametrize("override", ["train.lrr=1e-3", "method.kernell=4", "kernel=abc", "train.batch_size=big",
                                      "seed=1.5"])
def test_typos_and_wrong_types_are_rejected(override):
    with pytest.raises((ConfigCompositionException, ValidationError, ConfigKeyError)):
        cfg = compose_cfg(["method=dcft", override])
        OmegaConf.resolve(cfg)


@pytest.mark.parametrize("group,name", [("task", "rtee"), ("method", "loraa"), ("model", "bert-huge")])
def test_unknown_names_list_the_valid_ones(group, name):
    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg([f"{group}={name}"])
    assert "Available options" in str(e.value) or "options" in str(e.value).lower()


def test_run_folder_is_built_from_the_configuration_not_the_clock_or_the_override_order(tmp_path):
    import re

    from dcft.harness.sweep import plan

    a = plan(["task=rte", "method=dcft", "kernel=8", "seed=1", f"output_root={tmp_path}"])
    b = plan(["seed=1", "kernel=8", "method=dcft", "task=rte", f"output_root={tmp_path}"])
    assert a[0].run_dir == b[0].run_dir
    parent, name = a[0].run_dir.rsplit("/", 1)
    assert parent == str(tmp_path / "deberta-v3-base" / "rte" / "dcft")
    # the authors' DeBERTaV3-base RTE learning rate (conf/hp/authors/deberta-v3-base/rte.yaml) is in the label
    assert re.fullmatch(r"kernel=8,stride=8,targets=all,lr=0\.0012,seed=1-[0-9a-f]{8}", name), name
