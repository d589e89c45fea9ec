#!/usr/bin/env bash
# `make lock`: writes requirements/cpu.lock and requirements/cuda.lock, every package `make install`
# installs at one version, resolved by uv (`uv pip compile`) for Python 3.11 on Linux x86_64 (the
# committed CPU study's platform) from
#   - pyproject.toml's dependencies and its extras dev, slurm, parallel and minilm,
#   - torch's build: the CPU build (torch==2.13.0+cpu) or PyPI's torch 2.13.0 (for Linux, the CUDA 13.0 build),
#   - requirements/pins.txt: the versions the committed study's runs recorded, held fixed,
#   - requirements/excludes.txt: a declared dependency dcft never uses, left out.
# Packages the study did not record resolve to their newest versions as of LOCK_DATE (uv --exclude-newer),
# so a rerun writes the same files. Needs uv (`pip install uv`; UV=/path/to/uv) and the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
PYTHON=${PYTHON:-python}
# The latest date consistent with the study's versions: its runs recorded transformers 5.24.0, and
# transformers 5.25.0 was on PyPI from 2026-12-01 18:03 UTC.
LOCK_DATE=${LOCK_DATE:-2026-12-01T18:00:00Z}
command -v "$UV" >/dev/null || { echo "make lock needs uv: pip install uv (or UV=/path/to/uv)" >&2; exit 2; }

# torch's CPU build is not on PyPI. Where pip's find-links folder holds it (this project's CI has no
# PyTorch index), it is read from there; else uv asks PyTorch's CPU index for torch (--torch-backend cpu).
wheels=${TORCH_WHEELS-$("$PYTHON" -m pip config get global.find-links 2>/dev/null || true)}
if compgen -G "${wheels:-/nonexistent}/torch-2.13.0+cpu-*.whl" >/dev/null; then
  cpu_torch_source=(--find-links "$wheels")
else
  cpu_torch_source=(--torch-backend cpu)
fi

# compile OUT TORCH HEADER [uv options]: the lock OUT, HEADER's comment lines on top.
compile() {
  local out=$1 torch=$2 header=$3
  shift 3
  local body
  body=$(echo "$torch" | "$UV" pip compile pyproject.toml - --extra dev --extra slurm --extra parallel --extra minilm \
    --constraints requirements/pins.txt --excludes requirements/excludes.txt --exclude-newer "$LOCK_DATE" \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
    --quiet "$@")
  { printf '%s\n' "$header" "# Resolved by $("$UV" --version) with packages uploaded before $LOCK_DATE."; \
    echo "$body"; } > "$out.tmp"
  mv "$out.tmp" "$out"
  echo "wrote $out ($(grep -c '^[a-z0-9]' "$out") packages)"
}

compile requirements/cpu.lock "torch==2.13.0+cpu" \
"# The CPU install (\`make install\`): Python 3.11, Linux x86_64, torch's CPU build; the versions the
# committed CPU study was made with (requirements/pins.txt, checked by tests/test_lock.py). Written by
# requirements/lock.sh (\`make lock\`), never by hand." "${cpu_torch_source[@]}"

compile requirements/cuda.lock "torch==2.13.0" \
"# The CUDA install (\`make install LOCK=cuda\`): Python 3.11, Linux x86_64, PyPI's torch 2.13.0, whose
# Linux wheel is the CUDA 13.0 build (NVIDIA driver >= 580), resolved from that wheel's metadata on PyPI.
# It differs from cpu.lock only in torch's build and its CUDA packages (tests/test_lock.py); this
# project's CI has no GPU and installs cpu.lock, not this file. Written by requirements/lock.sh
# (\`make lock\`), never by hand."
