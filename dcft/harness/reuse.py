"""Reuse only what matches, one process per run folder, and where a run's hyperparameters came from.

* `decide(existing, identity, overwrite)`: a completed `result.json` is reused only when its stored
  effective configuration (`dcft.harness.identity`) equals the new one; otherwise the launch is refused
  with the keys that differ and what to do. A result of other library releases (major.minor of
  torch, transformers, peft, accelerate) is refused too, or reused with
  `train.reuse_across_versions=true`. Checkpoints follow the same rule
  (`dcft.harness.checkpoint.Checkpointer.restore` compares the same effective configuration).
* `RunLock`: an exclusive `fcntl.flock` on `<run_dir>/.run.lock`, held while a run trains, so two
  processes starting the same run at once (a requeued SLURM job and a manual relaunch) never both
  train into one folder: the second is refused at once, naming the holder. The kernel releases the
  lock when its process dies, so a killed run leaves no stale lock. (The file itself stays: deleting
  a lock file lets two later processes lock two different files.)
* `hp_sources(choices)`: the preset file (`conf/hp/<preset>/<model>/<task>.yaml`) a run was composed
  with, or an error when the chosen preset has none for this model x task (a silent fallback to the
  generic defaults is how a run got numbers nobody chose); likewise an error when a baseline has no
  settings of its own (`conf/method_hp/own/<model>/<method>/<task>.yaml`) and would fall back to
  DCFT's preset, unless `baseline_hp=shared` says so.

Written in-house: this is the harness's own rule for its own folders; Hydra and Accelerate have
no notion of a finished run.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from dcft.harness import identity

LOCK_FILE = ".run.lock"
LAUNCH_DIR = ".hydra-launch"  # Hydra's record of a launch (conf/config.yaml: hydra.output_subdir)
RECORD_DIR = ".hydra"  # the record of the launch that trained the run
HYDRA_ONLY = {LAUNCH_DIR, RECORD_DIR, "run.log"}  # what Hydra puts in a run folder before `run()` starts


class RunRefused(RuntimeError):
    """A launch that must not train (its folder holds another configuration, or is in use).
    Nothing is written: the folder's existing files are left as they are."""


class RunInUse(RunRefused):
    """Another process holds the run folder's lock."""


class PresetMissing(ValueError):
    """The chosen preset has no hyperparameter file for this model x task."""


class MethodHpMissing(ValueError):
    """A baseline has no settings of its own for this model x task and would run on DCFT's preset."""


def other_releases(existing: Mapping[str, Any], ident: Mapping[str, Any]) -> list[str]:
    """`versions.<library>: old -> new` lines where a stored result was made with other releases
    (major.minor) of the libraries in `dcft.harness.identity.VERSIONED` than this launch."""
    diff = identity.compare(identity.of_record(existing), identity.comparable(ident))
    return identity.describe([d for d in diff if d[0].startswith("versions.")])


def decide(existing: Mapping[str, Any] | None, ident: Mapping[str, Any], overwrite: bool, run_dir: Path,
           across_versions: bool = False) -> str:
    """What to do with a run folder: "reuse" (completed with this very configuration), "train"
    (nothing there, or failed / interrupted: resume from a matching checkpoint), "overwrite"
    (`train.overwrite=true`). Raises `RunRefused` for a completed run of another configuration, or
    of other library releases unless `across_versions` (`train.reuse_across_versions=true`)."""
    if overwrite:
        return "overwrite"
    if not existing or existing.get("status") != "completed":
        return "train"
    if existing.get("identity") is None:
        raise RunRefused(
            f"{run_dir} holds a completed result without an effective configuration (written by an "
            f"older version of dcft), so it cannot be checked against this one. Migrate old run folders "
            f"with `python scripts/migrate_runs.py DIR`, or re-run with train.overwrite=true.")
    diff = identity.compare(identity.of_record(existing), identity.comparable(ident))
    releases = [d for d in diff if d[0].startswith("versions.")]
    if not diff or (across_versions and len(releases) == len(diff)):
        return "reuse"
    if len(releases) == len(diff):
        raise RunRefused(
            f"{run_dir} holds a completed run of this configuration made with other library releases "
            f"(major.minor), whose numbers may differ:\n  " + "\n  ".join(identity.describe(releases))
            + "\nNothing was changed. To reuse it anyway run again with train.reuse_across_versions=true; to "
              "replace it, train.overwrite=true; to keep both, write this run elsewhere (output_root=DIR).")
    raise RunRefused(
        f"{run_dir} holds a completed run of another configuration; it differs in:\n  "
        + "\n  ".join(identity.describe(diff))
        + "\nNothing was changed. To replace that result run again with train.overwrite=true; to keep "
          "both, write this run elsewhere (output_root=DIR).")


def move_launch(run_dir: str | Path, new_dir: str | Path, root: str | Path | None = None) -> None:
    """A launch whose run turned out to be another folder's (a data limit that limits nothing): its
    Hydra record moves there and the folder Hydra made for it goes if nothing else is in it."""
    run_dir, new_dir = Path(run_dir), Path(new_dir)
    launch = run_dir / LAUNCH_DIR
    if launch.is_dir():
        new_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(new_dir / LAUNCH_DIR, ignore_errors=True)
        launch.rename(new_dir / LAUNCH_DIR)
    remove_unstarted(run_dir, root=root)


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown process"
    except OSError:
        return "unknown process"


class RunLock:
    """`with RunLock(run_dir):` holds the run folder exclusively (only where `enabled`: the main
    process of a multi-process run). Raises `RunInUse` at once if another process holds it."""

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.path = Path(run_dir) / LOCK_FILE
        self.enabled = enabled
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        if not self.enabled:
            return self
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking (documented in the README)
            self.enabled = False
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunInUse(
                f"{self.path.parent} is being trained by another process ({_holder(self.path)}); this launch "
                f"of the same run stops here and changes nothing. Wait for that process to finish (a "
                f"relaunch then reuses its result) or stop it first.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {platform.node()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def keep_launch(run_dir: str | Path) -> None:
    """A launch that trains: its Hydra record (`.hydra-launch/`) becomes the run's `.hydra/`."""
    launch, record = Path(run_dir) / LAUNCH_DIR, Path(run_dir) / RECORD_DIR
    if launch.is_dir():
        shutil.rmtree(record, ignore_errors=True)
        launch.rename(record)


def drop_launch(run_dir: str | Path) -> None:
    """A launch that does not train (reused, refused, rejected): its Hydra record goes, so the folder's
    `.hydra/` keeps naming the launch that made the run."""
    shutil.rmtree(Path(run_dir) / LAUNCH_DIR, ignore_errors=True)


def remove_unstarted(run_dir: str | Path, root: str | Path | None = None) -> bool:
    """Remove a run folder that holds only what Hydra wrote before the run was rejected (no result,
    no lock, no checkpoint), and its parents up to `root` that this leaves empty; True if removed.
    Anything else in the folder keeps it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not {p.name for p in run_dir.iterdir()} <= HYDRA_ONLY:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    if root is not None:
        root = Path(root).resolve()
        parent = run_dir.resolve().parent
        while parent != root and root in parent.parents:
            try:
                parent.rmdir()  # only if empty
            except OSError:
                break
            parent = parent.parent
    return True


# ------------------------------------------------------------------------------------------------
# Where the hyperparameters came from
# ------------------------------------------------------------------------------------------------
PRESET_GROUP = "hp@_global_"  # the defaults-list entry conf/config.yaml composes presets through
NO_PRESET = "none"
METHOD_GROUP = "method_hp@_global_"  # the per-method layer: conf/method_hp/<baseline_hp>/<model>/<method>/<task>.yaml
PRESET_METHODS = ("dcft",)  # methods whose settings the presets are (conf/hp/ holds DCFT's hyperparameters)
SHARED_OPT_IN = "baseline_hp=shared"  # every method on the preset, on purpose (conf/baseline_hp/shared.yaml)


def _files(conf_dir: Path, group: str, choice: str) -> Path:
    return conf_dir / group.split("@")[0] / f"{choice}.yaml"


def hp_sources(choices: Mapping[str, Any] | None, conf_dir: str | Path | None = None) -> dict[str, str | None]:
    """`{group: file used, or None}` for every hyperparameter layer of the defaults list (groups named
    `hp` or `..._hp`, e.g. the per-method layer `method_hp`). Raises `PresetMissing` when the main preset layer names a file that does not exist
    (unless `preset=none`): the message names the preset, the missing file and the choices. Raises
    `MethodHpMissing` when a baseline has no file of its own in the chosen per-method layer while a
    preset file applies (it would silently train on DCFT's preset): the message names the missing
    file, the methods that have one and the opt-in `baseline_hp=shared`."""
    from dcft.harness.config import CONF_DIR

    conf_dir = Path(conf_dir or CONF_DIR)
    out: dict[str, str | None] = {}
    for group, choice in (choices or {}).items():
        name = str(group).split("@")[0]
        if not (name == "hp" or name.endswith("_hp")) or choice is None:
            continue
        path = _files(conf_dir, group, str(choice))
        out[group] = path.relative_to(conf_dir.parent).as_posix() if path.exists() else None
    choice = (choices or {}).get(PRESET_GROUP)
    preset = (choices or {}).get("preset")
    if choice is not None and out.get(PRESET_GROUP) is None and preset != NO_PRESET:
        preset_name, model, task = (str(choice).split("/") + ["", "", ""])[:3]
        have = sorted(p.relative_to(conf_dir / "hp").with_suffix("").as_posix()
                      for p in (conf_dir / "hp").glob(f"*/{model}/{task}.yaml"))
        others = [h.split("/")[0] for h in have]
        raise PresetMissing(
            f"preset={preset_name} has no hyperparameters for model={model} task={task} "
            f"(no file conf/hp/{choice}.yaml). "
            + (f"Presets that have this model x task: {', '.join('preset=' + o for o in others)}. " if others else
               f"No preset has this model x task. ")
            + f"To run on the generic defaults of conf/config.yaml, say so with preset={NO_PRESET}.")
    _check_method_hp(choices or {}, out, conf_dir)
    return out


def _check_method_hp(choices: Mapping[str, Any], out: Mapping[str, str | None], conf_dir: Path) -> None:
    """A baseline whose per-method layer has no file for it must not fall back to the preset unasked.
    Checked only where the layer has files at all (`baseline_hp=own`; `shared` has none, on purpose) and
    a preset file applies (`preset=none` already runs on the generic defaults by choice)."""
    choice, method = choices.get(METHOD_GROUP), choices.get("method")
    if choice is None or out.get(METHOD_GROUP) is not None or out.get(PRESET_GROUP) is None:
        return
    layer, model, _, task = (str(choice).split("/") + ["", "", "", ""])[:4]
    if method in PRESET_METHODS or not (conf_dir / "method_hp" / layer).is_dir():
        return
    have = sorted(p.parent.name for p in (conf_dir / "method_hp" / layer / model).glob(f"*/{task}.yaml"))
    raise MethodHpMissing(
        f"method={method} has no settings of its own for model={model} task={task} (no file "
        f"conf/method_hp/{choice}.yaml), so it would train on DCFT's preset ({out[PRESET_GROUP]}). "
        + (f"Methods with their own settings for this model x task: {', '.join(have)}. " if have else
           "No method has its own settings for this model x task. ")
        + f"Add the file (scripts/method_hp.py writes them from their sources), or train {method} on the preset "
          f"on purpose with {SHARED_OPT_IN}.")
