"""Checkpoint and resume: a killed run, launched again with the same command, continues where
its last checkpoint left off and ends with the metrics of an uninterrupted run.

A checkpoint holds the method's trainable state only (adapter and head: kilobytes for adapter
methods; everything for full fine-tuning), the optimizer and scheduler, every RNG state, the
loop's `TrainState` (step, epoch position, best score, eval history) and a fingerprint of the
effective configuration (`dcft.harness.identity`). Files are written atomically (temporary file, then rename): `last.pt` is replaced
at every save, `best.pt` (trainable state only) whenever the best score improves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcft.report.results import atomic_write
from dcft.harness.train import TrainState

class CheckpointMismatch(ValueError):
    """A checkpoint was written by a run with another effective configuration."""


def fingerprint(ident: dict[str, Any]) -> str:
    """A hash of a run's effective configuration (`dcft.harness.identity.effective_config`): the same rule
    that decides whether a completed result may be reused decides whether a checkpoint may be resumed."""
    from dcft.harness.identity import canonical

    return hashlib.sha256(canonical({k: v for k, v in ident.items() if k != "hash"}).encode()).hexdigest()[:16]


def atomic_torch_save(obj: Any, path: Path) -> None:
    """`torch.save` through `dcft.report.results.atomic_write` (temporary file, flush, rename)."""
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

    def __init__(self, run_dir: str | Path, method, ident: dict[str, Any], is_main: bool = True):
        self.dir = Path(run_dir) / "checkpoints"
        self.method = method
        self.identity = ident
        self.fingerprint = fingerprint(ident)
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
            "identity": self.identity,
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
            from dcft.harness.identity import differences

            stored = payload.get("identity")
            diff = differences(stored, self.identity) if stored else [
                f"fingerprint {payload.get('fingerprint')} != {self.fingerprint} (checkpoint of an older version)"]
            raise CheckpointMismatch(
                f"checkpoint {self.last} was written by a run of another configuration; it differs in:\n  "
                + "\n  ".join(diff) + f"\nTo start this configuration from scratch use train.overwrite=true "
                f"(deletes {self.dir}) or write it elsewhere (output_root=DIR).")
        self.method.load_state_dict(model, payload["trainable"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        self.method.load_training_state(payload.get("method_state", {}))
        set_rng_states(payload["rng"])
        restored = TrainState(**payload["state"])
        self._best_saved = restored.best_step
        return restored
