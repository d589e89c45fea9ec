"""Where the GPU check runs: the CUDA device it needs (or a clear refusal), and the GPU, driver and
library versions its numbers belong to."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import torch


class NoCuda(SystemExit):
    """No CUDA device is visible: the GPU check cannot run (it never passes on a CPU)."""


def require_cuda() -> torch.device:
    """The first visible CUDA device, or `NoCuda` (exit status 2) with what to do about it."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.device("cuda", 0)
    build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    print(f"gpu-check: no CUDA device is visible (torch {torch.__version__}, {build}{where}).\n"
          "This check runs on a GPU only and never passes on a CPU. On a GPU machine, install a CUDA build of "
          "torch that matches the driver, e.g.\n"
          "  make install TORCH=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128\n"
          "then run `make gpu-check` again.", file=sys.stderr, flush=True)
    raise NoCuda(2)


def driver_version() -> str | None:
    """The NVIDIA driver version (`nvidia-smi`), or None where it cannot be read."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("torch", "transformers", "peft", "accelerate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def environment(device: torch.device) -> dict[str, Any]:
    """The GPU (name, memory, compute capability, how many are visible), driver, CUDA and cuDNN as
    torch sees them, TF32 and bf16 settings, library versions and the commit."""
    from dcft.report.results import git_commit

    props = torch.cuda.get_device_properties(device)
    return {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
        "gpu_count": torch.cuda.device_count(),
        "driver": driver_version(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "bf16_supported": torch.cuda.is_bf16_supported(),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "versions": library_versions(),
        "git": git_commit(),
    }


ENVIRONMENT_LABELS = {
    "gpu": "GPU", "gpu_memory_gib": "memory (GiB)", "compute_capability": "compute capability",
    "gpu_count": "GPUs visible", "driver": "driver", "cuda": "CUDA (torch)", "cudnn": "cuDNN",
    "bf16_supported": "bf16 supported", "tf32_cudnn": "TF32 in cuDNN convolutions",
    "float32_matmul_precision": "float32 matmul precision",
}


def environment_markdown(env: dict[str, Any]) -> str:
    """The environment as a two-column Markdown table."""
    rows = [(label, env.get(key)) for key, label in ENVIRONMENT_LABELS.items()]
    rows += [(pkg, v) for pkg, v in (env.get("versions") or {}).items()]
    git = env.get("git") or {}
    rows.append(("commit", f"{git.get('commit')}" + (" (uncommitted changes)" if git.get("dirty") else "")))
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {'—' if v is None else v} |" for k, v in rows])
