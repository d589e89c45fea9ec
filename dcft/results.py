"""One self-describing `result.json` per run, written atomically, and loading them all.

A result file holds: `status` (`running`, `completed`, `failed` with `error`), the resolved
config, the group choices (model/task/method/preset), metrics (best with its step, final, the
full evaluation history), parameter counts (method's own, head, total), wall times, optimizer
steps per second, peak memory, device, precision, library versions and the git commit.

    import dcft.results as R; df = R.load_all()          # every run under results/runs
    pd.json_normalize([json.load(open(p)) for p in Path("results/runs").rglob("result.json")])
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import IO, Any, Callable

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1
_PACKAGES = ("torch", "transformers", "accelerate", "peft", "datasets", "hydra-core", "omegaconf", "numpy",
             "scikit-learn", "scipy")


def current_umask() -> int:
    """The process's file-creation mask, read without changing it where Linux allows
    (`/proc/self/status`); elsewhere set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that a reader sees the old file or the new one, never half: `write` fills a
    temporary file in the same folder, which is flushed to disk, then renamed over `path`. The file
    gets the mode a plain `open()` would give (0666 less the umask: 0644 usually), so colleagues
    on a shared machine can read results and checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; give what open() would (0644 at umask 022)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _jsonable(obj: Any) -> Any:
    """Plain JSON values; non-finite floats become null (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """`atomic_write_text` of `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_result(run_dir: str | Path) -> dict | None:
    """The result of a run folder, or None if there is none (or it is unreadable)."""
    p = Path(run_dir) / RESULT_FILE
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on, and Python's."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit(cwd: str | Path | None = None) -> dict[str, Any]:
    """The repository's commit and whether the work tree had uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": dirty if sha else None}


def cpu_model() -> str | None:
    """The CPU's model name (Linux `/proc/cpuinfo`), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_name() -> str | None:
    """The name of the first visible CUDA device, or None."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def environment() -> dict[str, Any]:
    """Where a run ran: host, hardware, platform, command line, versions, commit."""
    return {"host": platform.node(), "cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpu": gpu_name(),
            "platform": platform.platform(), "argv": sys.argv, "versions": library_versions(), "git": git_commit()}


def load_all(root: str | Path = "results/runs", completed_only: bool = False):
    """Every result file under `root` as one flat `pandas.DataFrame` (nested keys joined by '.'),
    with the folder of each run in `run_dir`."""
    import pandas as pd

    rows = []
    for p in sorted(Path(root).rglob(RESULT_FILE)):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            warnings.warn(f"skipping unreadable result file {p}: {e}")
            continue
        rec["run_dir"] = str(p.parent)
        rows.append(rec)
    df = pd.json_normalize(rows) if rows else pd.DataFrame()
    if completed_only and not df.empty:
        df = df[df["status"] == "completed"].reset_index(drop=True)
    return df
