"""Every command in README.md's code blocks either runs here as written, from a copy of the work tree
(what a fresh clone holds), or is listed with the reason it cannot run offline in a test (the Hub,
GPUs, a cluster, hours of training, installing packages). A README command in neither list fails
`test_every_readme_command_is_accounted_for`, so the README and this file change together.
The README's Python example is executed by tests/test_readme.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

# Runs in the default suite (seconds each).
FAST = {
    "make help": [],
    "make sweeps": ["table4"],
    "make tables": ["results/tables/table6"],
    "python -m dcft.report.tables --model minilm --tables 1 --runs results/cpu-study/runs --seeds 6,7,8":
        ["table 1: ", "/90 cells with our runs"],
    "python -m dcft.report.results": [],
    "python run.py --help": ["== Recipes ==", "train.lr=5.0e-4"],
    "python -m dcft.report.results results/cpu-study/runs task=sst2 method=dcft,lora": ["sst2", "dcft", "lora"],
    "python -m dcft.report.results results/cpu-study/runs task=sst2 method=dcft,lora --csv sst2.csv": ["wrote sst2.csv"],
    'make compare RUNS=results/cpu-study/runs FILTER="task=sst2 method=dcft,lora"': ["sst2", "lora"],
    'import dcft.report.results; df = dcft.report.results.load_tidy("results/runs")': [],
}
# Runs only with `make test-slow` (minutes on a loaded 2-core machine), in this order (the smoke run uses the demo's data).
SLOW = {
    "python3 -m venv .venv && . .venv/bin/activate": [],
    "make demo": ["expected: about", "squad", "dcft", "lora", "kernel=2", "Caveat: a demonstration"],
    "python run.py model=minilm task=squad method=dcft kernel=8 preset=cpu data.squad_dir=results/runs/demo/toy-squad debug=smoke":
        ["completed", "SMOKE"],
    "make params": ["cells match"],
    "make figures": ["wrote results/figures/table4_kernel.png"],
    "make cpu-report": ["results/cpu-study"],
    "make study-report STUDY=cpu-minilm": ["claims", "results/cpu-study"],
    "python -m dcft.study plan conf/study/cpu-minilm.yaml": ["cpu-minilm (conf/study/cpu-minilm.yaml)", "by stage"],
    "python -m dcft.study next conf/study/cpu-minilm.yaml": ["run.py -m", "output_root=results/cpu-study/runs"],
    "make plan SWEEP=table4": ["table4"],
    "python examples/trl_sft_dcft.py": ["loss", "adapter in sft-dcft/adapter"],
}
NOT_RUN = {
    "make install": "installs packages; CI runs it (.ci/run)",
    "make test": "the test suite itself",
    "make install TORCH=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128": "a CUDA build of torch",
    "make install LOCK=none": "installs packages (tests/test_lock.py checks its commands with make -n)",
    "make install LOCK=cuda": "a CUDA build of torch (tests/test_lock.py checks its commands with make -n)",
    "python run.py task=rte method=dcft kernel=8": "DeBERTaV3-base and GLUE from the Hub",
    "python run.py model=minilm task=rte data.glue_dir=/path/to/glue_data":
        "a user's GLUE folder (tests/test_first_hour.py runs conf/config.yaml's smoke version on a fixture)",
    "python run.py -m task=rte,mrpc method=dcft kernel=2,4,8 stride=1,2,8": "the Hub, 18 full runs",
    "make table4": "the Hub, GPU hours",
    "make cpu-study": "about 10 hours on 2 cores, reads ../shared/glue",
    "make study STUDY=cpu-minilm JOBS=2": "hours of training, reads ../shared/glue (tests/study/test_study_end_to_end.py "
                                          "runs a tiny study through the same command)",
    'make study STUDY=cpu-minilm JOBS=2 STUDY_ARGS="--tasks stsb,rte --groups core"':
        "hours of training, reads ../shared/glue (the chunk's filter: tests/study/test_study_spec.py)",
    "make bench": "minutes of timing on an idle machine",
    'make gpu-check GPU_CHECK_ARGS="--glue-dir ../shared/glue"': "a CUDA GPU (without one it refuses: tests/test_gpu_check.py)",
    "make cpu-bench": "minutes of timing on an idle machine",
    "accelerate launch --multi_gpu --num_processes 4 run.py task=mnli method=dcft kernel=8": "4 GPUs and the Hub",
    "accelerate launch --multi_gpu --num_machines 2 --machine_rank $RANK --main_process_ip $HOST "
    "--main_process_port 29500 --num_processes 16 run.py task=mnli method=dcft kernel=8": "2 GPU nodes",
    "accelerate launch --multi_gpu --num_processes 2 run.py model=minilm task=rte ...": "a template (tests/test_multiprocess.py runs 2 CPU processes)",
    "python run.py +sweep=table4 hydra/launcher=slurm hydra.launcher.partition=gpu train.checkpoint_steps=500 "
    "hydra.launcher.timeout_min=720 hydra.launcher.array_parallelism=8": "a SLURM cluster",
    "python -m dcft.harness.export --to-lora my-adapter my-lora": "needs a trained adapter; tests/peft/test_peft_export_lora.py "
                                                          "runs the command on one",
    "python -m dcft.harness.export --to-lora results/runs/<run> my-lora": "a template; tests/peft/test_peft_export_lora.py "
                                                                  "runs it on a run directory",
}


def readme_commands(text: str | None = None) -> list[str]:
    """Shell and Python one-liners of the README's indented code blocks (comments and line
    continuations resolved); fenced blocks are left to tests/test_readme.py."""
    lines = (text if text is not None else (ROOT / "README.md").read_text()).splitlines()
    out, fenced, i = [], False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r" {4}(python|make|accelerate|import|tensorboard|\. )", line):
            cmd = line[4:]
            while cmd.rstrip().endswith("\\"):
                i += 1
                cmd = cmd.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            out.append(re.sub(r"\s+#\s.*$", "", cmd).strip())
        i += 1
    return out


def test_every_readme_command_is_accounted_for():
    cmds = readme_commands()
    assert len(cmds) >= 20
    unknown = [c for c in cmds if c not in FAST and c not in SLOW and c not in NOT_RUN]
    assert not unknown, f"README commands neither run nor excused in {__file__}: {unknown}"
    assert not [c for c in FAST if c not in cmds] + [c for c in SLOW if c not in cmds]  # no stale entries


def test_command_parser_resolves_continuations_and_comments():
    text = "intro\n\n    make x   # a comment\n    python a.py \\\n        b=1\n```python\n    import no\n```\n"
    assert readme_commands(text) == ["make x", "python a.py b=1"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The work tree's tracked and new (not ignored) files, as a fresh clone would have them."""
    dst = tmp_path_factory.mktemp("clone") / "dcft"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


def _run(cmd: str, cwd: Path, timeout: int) -> str:
    if cmd.startswith("import "):
        cmd = f"python -c '{cmd}'"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(cwd)}
    p = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p.stdout + p.stderr


@pytest.mark.parametrize("cmd", list(FAST))
def test_fast_readme_command_runs(cmd, clone):
    out = _run(cmd, clone, timeout=300)
    for word in FAST[cmd]:
        assert word in out, (cmd, word, out[-2000:])


@pytest.mark.slow
def test_slow_readme_commands_run_in_order(clone):
    for cmd, words in SLOW.items():
        out = _run(cmd, clone, timeout=3600)
        for word in words:
            assert word in out, (cmd, word, out[-3000:])
