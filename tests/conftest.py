"""Shared fixtures: tiny models built from the repository's own `conf/model/tiny-*.yaml`.

Tests never touch the network or `../shared`: models are random and built from config,
the tokenizer is the offline byte-level one, data fixtures are written by the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
TINY_MODELS = ("tiny-deberta", "tiny-roberta", "tiny-bert")


def model_cfg(name: str) -> dict:
    """A `conf/model/<name>.yaml` file as a plain dict."""
    return OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml"), resolve=True)


def tiny_model(name: str = "tiny-deberta", head: str = "classification", num_labels: int = 2, seed: int = 0):
    """A tiny random model from config, in eval mode, deterministic for a seed."""
    from dcft.harness.models import build_model

    model = build_model(model_cfg(name), head=head, num_labels=num_labels, seed=seed)
    return model.eval()


@pytest.fixture(params=TINY_MODELS)
def tiny_name(request) -> str:
    """Each tiny model family in turn."""
    return request.param


@pytest.fixture
def tiny(tiny_name):
    """A tiny random classification model of each family in turn."""
    return tiny_model(tiny_name)


@pytest.fixture
def tokens() -> dict:
    """A small batch of inputs for the tiny models (ids inside the byte vocabulary)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 260, (3, 11), generator=g)
    ids[:, 0] = 1
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and threads contend on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def compose_cfg(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """The composed Hydra config for these command-line overrides, exactly as `run.py` composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dcft.harness.config import register

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides or [], return_hydra_config=return_hydra_config)
