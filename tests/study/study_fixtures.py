"""Study fixtures: a small study file and result files written the way run.py writes them (the config
Hydra composes for the run's overrides, its declared part from `dcft.harness.identity.declared_config`)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from conftest import compose_cfg
from dcft.harness.identity import declared_config

STUDY = {
    "name": "t", "title": "a test study",
    "run": {"model": "minilm", "preset": "cpu", "logger": "none"},
    "tasks": {"sst2": {"metric": "accuracy", "budgets": [500, 1000], "batch_size": 32, "max_len": 128,
                       "eval_steps": 100, "holdout": 0.01}},
    "settings": {"lora": {"title": "LoRA", "method": "lora"},
                 "dcft8": {"title": "DCFT k8", "method": "dcft", "set": {"kernel": 8}},
                 "dcft4": {"title": "DCFT k4", "method": "dcft", "set": {"kernel": 4}},
                 "lora_qv": {"title": "LoRA qv", "method": "lora", "set": {"targets": "qv"}}},
    "tuning": {"axis": "train.lr", "step": 2, "either_side": 1, "centre": "source", "recentre": "previous_budget",
               "extend": 2, "seed": 6, "select_on": "holdout"},
    "seeds": [6, 7, 8],
    "groups": {"core": {"settings": ["lora", "dcft8"], "tasks": ["sst2"], "rate": "tuned"},
               "kernel": {"settings": ["dcft4"], "tasks": ["sst2"], "rate": {"of": "dcft8"}, "parent": "dcft8"},
               "frontier": {"settings": ["lora_qv"], "tasks": ["sst2"], "rate": {"around": "lora"}}},
    "budget_check": {"gate": "best_core", "also": ["lora"], "factor": 2, "rule": "interval_contains_zero"},
    "margins": {"sst2": 1.0},
    "claims": [{"name": "k8_vs_lora", "kind": "as_good_as", "settings": ["dcft8", "lora"], "tasks": ["sst2"]}],
}

_composed: dict[tuple, dict] = {}


def write_study(tmp: Path, **changes) -> Path:
    raw = {**STUDY, "output_root": str(tmp / "runs"), "report_dir": str(tmp / "out"), **changes}
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def result(root: Path, setting: str, steps: int, lr: float, seed: int, holdout: float, dev: float,
           task: str = "sst2", params: int = 1000, history: list | None = None) -> None:
    """A completed run's result.json as run.py writes it, under `root`, for a setting of STUDY."""
    s = STUDY["settings"][setting]
    over = [f"{k}={v}" for k, v in {**STUDY["run"], "task": task, "method": s["method"], **s.get("set", {}),
                                    "train.max_steps": steps}.items()]
    key = tuple(over)
    if key not in _composed:
        _composed[key] = OmegaConf.to_container(compose_cfg(over), resolve=True)
    config = json.loads(json.dumps(_composed[key]))
    config["seed"], config["train"]["lr"] = seed, lr
    declared = declared_config(config)
    folder = root / "minilm" / task / s["method"] / f"{setting}-{steps}-{lr}-{seed}"
    folder.mkdir(parents=True)
    best = {"score": holdout, "validation/accuracy": dev, "holdout/accuracy": holdout}
    rec = {"status": "completed", "finished_at": "2026-12-07T10:00:00", "config": config,
           "identity": {"declared": declared}, "params": {"method": params}, "wall_time_s": 60.0,
           "metrics": {"best": best, "history": history or [{"step": steps, **best}]}}
    (folder / "result.json").write_text(json.dumps(rec), encoding="utf-8")
