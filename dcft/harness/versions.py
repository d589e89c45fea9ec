"""The library versions a run used against the lock `make install` installs (`requirements/cpu.lock`,
the versions the committed results were made with): a run's summary warns when a library that computes
a run differs from the lock, since the run then trained on other library code than those results.

The lock lies in the repository beside the package, so `dcft` installed editable from a clone finds it;
installed as a library (from a wheel) there is no lock and nothing is compared.

Versions are compared without their local label: torch 2.13.0+cpu and 2.13.0+cu130 are one release in
two builds (which device ran is the result's `device`), so an install from `requirements/cuda.lock`
agrees with the CPU lock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# The libraries whose code computes a run (model, adapter, training loop, data, metrics).
COMPUTE_LIBRARIES = ("torch", "transformers", "peft", "accelerate", "datasets", "numpy", "scikit-learn", "scipy")
LOCK_FILE = Path(__file__).resolve().parents[2] / "requirements" / "cpu.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def read_lock(path: str | Path = LOCK_FILE) -> dict[str, str]:
    """Package (canonical name) -> pinned version of each `name==version` line of a lock file;
    an empty dict when the file does not exist."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return {canonicalize_name(m[1]): m[2] for m in map(_PIN.match, text.splitlines()) if m}


def release(version: str | None) -> str | None:
    """A version without its local label (`2.13.0+cpu` -> `2.13.0`), normalised; None stays None."""
    if version is None:
        return None
    try:
        return Version(version).public
    except InvalidVersion:
        return version.split("+", 1)[0]


def lock_differences(versions: Mapping[str, str | None], lock: Mapping[str, str]) -> list[tuple[str, str | None, str]]:
    """(library, version used, locked version) for each library of `COMPUTE_LIBRARIES` that both name
    and whose releases differ; `versions`: name -> version, None = not installed."""
    used = {canonicalize_name(k): v for k, v in versions.items()}
    return [(name, used[name], lock[name]) for name in COMPUTE_LIBRARIES
            if name in lock and name in used and release(used[name]) != release(lock[name])]


def lock_warning(versions: Mapping[str, str | None] | None = None, lock_file: str | Path | None = None) -> str | None:
    """The summary's warning when `versions` (default: the installed ones) differ from the lock
    (default `LOCK_FILE`); None when they agree or there is no lock file."""
    lock_file = LOCK_FILE if lock_file is None else lock_file
    lock = read_lock(lock_file)
    if not lock:
        return None
    if versions is None:
        from dcft.report.results import library_versions

        versions = library_versions()
    diff = lock_differences(versions, lock)
    if not diff:
        return None
    listed = ", ".join(f"{name} {used or 'not installed'} (lock {locked})" for name, used, locked in diff)
    path = Path(lock_file)
    return (f"   WARNING: library versions differ from {path.parent.name}/{path.name}, the versions the committed "
            f"results were made with: {listed}; `make install` installs the lock's")
