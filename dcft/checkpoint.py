"""Checkpoint and resume: a killed run, launched again with the same command, continues where
its last checkpoint left off and ends with the metrics of an uninterrupted run.

A checkpoint holds the method's trainable state only (adapter and head: kilobytes for adapter
methods; everything for full fine-tuning), the optimizer and scheduler, every RNG state, the
loop's `TrainState` (step, epoch position, best score, eval history) and a fingerprint of the
configuration. Files are written atomically (temporary file, then rename): `last.pt` is replaced
at every save, `best.pt` (trainable state only) whenever the best score improves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcft.results import atomic_write
from dcft.train import TrainState

# Config keys that do not change a run's trajectory: a checkpoint stays valid across them.
NEUTRAL_KEYS = {("train", "overwrite"), ("train", "progress"), ("train", "checkpoint_steps"), ("output_root",),
                ("data", "glue_dir"), ("data", "squad_dir"), ("model", "path")}


class CheckpointMismatch(ValueError):
    """A checkpoint was written by a run with another configuration."""


def fingerprint(config: dict[str, Any]) -> str:
    """A hash of the resolved config, without the keys that do not change the trajectory."""
    cfg = json.loads(json.dumps(config, default=str))
    for path in NEUTRAL_KEYS:
        node = cfg
        for k in path[:-1]:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def atomic_torch_save(obj: Any, path: Path) -> None:
    """`torch.save` through `dcft.results.atomic_write` (temporary file, flush, rename)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def rng_states() -> dict[str, Any]:
    """Every random state that a training step reads."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` returned."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Checkpointer:
    """Saves (`__call__`) and restores (`restore`) a run's state under `<run_dir>/checkpoints/`."""

    def __init__(self, run_dir: str | Path, method, config: dict[str, Any], is_main: bool = True):
        self.dir = Path(run_dir) / "checkpoints"
        self.method = method
        self.fingerprint = fingerprint(config)
        self.is_main = is_main
        self._best_saved: int | None = None

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    def __call__(self, state: TrainState, model, optimizer, scheduler) -> None:
        if not self.is_main:
            return
        payload = {
            "fingerprint": self.fingerprint,
            "state": dataclasses.asdict(state),
            "trainable": self.method.state_dict(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_states(),
            "method_state": self.method.training_state(),
        }
        atomic_torch_save(payload, self.last)
        if state.best_step is not None and state.best_step != self._best_saved and state.best_step == state.step:
            atomic_torch_save({"fingerprint": self.fingerprint, "step": state.step, "score": state.best_score,
                               "trainable": payload["trainable"]}, self.best)
            self._best_saved = state.best_step

    def restore(self, state: TrainState, model, optimizer, scheduler) -> TrainState | None:
        """Load `last.pt` into model, optimizer and scheduler; None when there is no checkpoint."""
        if not self.last.exists():
            return None
        try:
            payload = torch.load(self.last, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - a damaged file must say so, not crash deep inside
            raise CheckpointMismatch(f"checkpoint {self.last} cannot be read ({type(e).__name__}: {e}); "
                                     f"delete it to start the run from scratch") from e
        if payload.get("fingerprint") != self.fingerprint:
            raise CheckpointMismatch(
                f"checkpoint {self.last} was written by a run with another configuration "
                f"(fingerprint {payload.get('fingerprint')} != {self.fingerprint}); delete {self.dir} or set "
                f"output_root elsewhere to start this configuration from scratch")
        self.method.load_state_dict(model, payload["trainable"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        self.method.load_training_state(payload.get("method_state", {}))
        set_rng_states(payload["rng"])
        restored = TrainState(**payload["state"])
        self._best_saved = restored.best_step
        return restored
