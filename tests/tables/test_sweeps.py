"""The paper-table sweeps (`conf/sweep/`), their dry run (`dcft.sweep plan`), the SLURM launcher
config, and the skipping of finished runs on relaunch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from dcft import sweep as S

SWEEPS = ROOT / "conf" / "sweep"
# model x task x method x kernel x stride x targets of each paper table (seed 6 once)
EXPECTED_RUNS = {
    "table1_dcft": 2 * 8 * 2,  # DeBERTaV3-base, RoBERTa-large x 8 GLUE tasks x kernel 2, 8
    "table1_baselines_deberta": 8 * 7,  # full bitfit hadapter padapter lora sora lorafa
    "table1_baselines_roberta": 8 * 5,  # full hadapter padapter lora lorafa
    "table2_dcft": 4,
    "table2_baselines": 4 * 2,
    "table3_dcft": 2,
    "table3_baselines": 2 * 4,
    "table4": 6 * 5,  # 6 tasks x kernel 2, 4, 6, 8, 12
    "table4_full": 6,
    "table5": 4 * 4,  # 4 tasks x stride 1, 2, 4, 8 (= null)
    "table6": 4 * 5,  # 4 tasks x qk, qv, qkv, qkvo, all
    "figures": 5,
    # learning-rate tuning of the baselines (scripts/method_hp.py): rates x tasks
    "table1_lr_deberta-v3-base_full": 4 * 8,  # 1e-05, 1.5e-05, 2e-05, 3e-05
    "table1_lr_deberta-v3-base_bitfit": 3 * 8,  # 0.0005, 0.0008, 0.001
    "table1_lr_deberta-v3-base_hadapter": 3 * 8,  # 0.0005, 0.0008, 0.001
    "table1_lr_deberta-v3-base_padapter": 3 * 8,  # 0.0005, 0.0008, 0.001
    "table1_lr_deberta-v3-base_lora": 3 * 8,  # 0.0002, 0.0003, 0.0005
    "table1_lr_deberta-v3-base_sora": 3 * 8,  # 0.0005, 0.0008, 0.001
    "table1_lr_deberta-v3-base_lorafa": 3 * 8,  # 0.0002, 0.0003, 0.0005
    "table1_lr_roberta-large_full": 4 * 8,  # 8e-06, 1e-05, 2e-05, 3e-05
    "table1_lr_roberta-large_hadapter": 3 * 8,  # 0.0002, 0.0003, 0.0005
    "table1_lr_roberta-large_padapter": 3 * 8,  # 0.0002, 0.0003, 0.0005
    "table1_lr_roberta-large_lora": 5 * 8,  # 0.0001, 0.0002, 0.0003, 0.0004, 0.0005
    "table1_lr_roberta-large_lorafa": 5 * 8,  # 0.0001, 0.0002, 0.0003, 0.0004, 0.0005
    "table2_lr_deberta-v2-xxlarge_full": 4 * 4,  # 2e-06, 2.5e-06, 3e-06, 5e-06
    "table2_lr_deberta-v2-xxlarge_lora": 7 * 4,  # 5e-05, 6e-05, 8e-05, 0.0001, 0.00013, 0.0002, 0.0003
    "table3_lr_deberta-v3-base_full": 3 * 2,  # 1e-05, 2e-05, 3e-05
    "table3_lr_deberta-v3-base_hadapter": 3 * 2,  # 0.0008, 0.001, 0.002
    "table3_lr_deberta-v3-base_padapter": 3 * 2,  # 0.0008, 0.001, 0.002
    "table3_lr_deberta-v3-base_lora": 3 * 2,  # 0.0008, 0.001, 0.002
}


def _params(name: str) -> dict:
    return dict(OmegaConf.load(SWEEPS / f"{name}.yaml").hydra.sweeper.params)


def test_every_sweep_file_is_known():
    assert sorted(p.stem for p in S.sweep_files()) == sorted(EXPECTED_RUNS)


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_sweep_file_header_and_size(name: str):
    path = SWEEPS / f"{name}.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# @package _global_"  # Hydra reads the header only up to the first other line
    assert lines[1].startswith(f"# python run.py +sweep={name}")  # then the command that runs it
    cfg = OmegaConf.load(path)
    assert cfg.hydra.mode == "MULTIRUN"
    assert S.count_runs(path) == EXPECTED_RUNS[name]
    assert name.split("_")[0] in ("table1", "table2", "table3", "table4", "table5", "table6", "figures", "cpu")
    assert f"+sweep={name}" in (ROOT / "Makefile").read_text(encoding="utf-8")  # a make target runs it


def test_dcft_sweeps_spell_out_the_setting():
    """Every DCFT sweep names kernel, stride and targets, so one setting = one run folder."""
    for name in EXPECTED_RUNS:
        p = _params(name)
        if p["method"] == "dcft":
            assert {"kernel", "stride", "targets", "seed"} <= set(p), name
        else:
            assert not {"kernel", "stride"} & set(p), name  # baselines: no DCFT keys in their folders


def test_command_line_overrides_replace_sweep_values():
    path = SWEEPS / "table4.yaml"
    assert S.count_runs(path, ["task=rte,cola"]) == 2 * 5
    assert S.count_runs(path, ["seed=6,7,8"]) == 6 * 5 * 3


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_sweep_composes_every_job(name: str, tmp_path: Path):
    """One task (and model) of each sweep, each job composed as Hydra's launcher composes it."""
    p = _params(name)
    task, model = str(p["task"]).split(",")[0], str(p["model"]).split(",")[0]
    extra = [f"task={task}", f"model={model}"]
    runs = S.plan([f"+sweep={name}", *extra, f"output_root={tmp_path}"])
    assert len(runs) == S.count_runs(SWEEPS / f"{name}.yaml", extra)
    assert [r.status for r in runs] == ["new"] * len(runs), [r.detail for r in runs if r.detail]
    methods = str(p["method"]).split(",")
    for r in runs:
        rel = Path(r.run_dir).relative_to(tmp_path).parts
        assert rel[:2] == (model, task) and rel[2] in methods and len(rel) == 4, r.run_dir
    assert len({r.run_dir for r in runs}) == len(runs)


def test_plan_folders_are_those_of_table4(tmp_path: Path):
    runs = S.plan(["+sweep=table4", "task=rte", f"output_root={tmp_path}"])
    for r, k in zip(runs, (2, 4, 6, 8, 12), strict=True):
        parent, name = r.run_dir.rsplit("/", 1)
        assert parent == str(tmp_path / "deberta-v3-base" / "rte" / "dcft")
        assert re.fullmatch(rf"kernel={k},stride={k},targets=all,lr=0\.0012,seed=6-[0-9a-f]{{8}}", name), name


def test_shared_setting_has_one_folder(tmp_path: Path):
    """Kernel 8, stride 8, ALL targets on RTE appears in Tables 1, 4, 5 and 6: one folder, one run."""
    folders = {}
    for name in ("table1_dcft", "table4", "table5", "table6"):
        runs = S.plan([f"+sweep={name}", "task=rte", "model=minilm", f"output_root={tmp_path}"])
        folders[name] = {r.run_dir for r in runs}
    shared = set.intersection(*folders.values())
    assert len(shared) == 1
    assert re.fullmatch(r".*/minilm/rte/dcft/kernel=8,stride=8,targets=all,lr=[0-9.e-]+,seed=6-[0-9a-f]{8}",
                        shared.pop())


def _completed(run_dir: Path, cfg, **extra) -> dict:
    """A completed result.json for `cfg` in `run_dir`, carrying the effective configuration `run()`
    computes for it (so only the reuse decision is under test here; tests/test_identity.py tests it)."""
    from omegaconf import OmegaConf

    from dcft.experiment import precheck
    from dcft.identity import effective_config

    method, task = precheck(cfg)
    ident = effective_config(OmegaConf.to_container(cfg, resolve=True), task, method.revision)
    rec = {"status": "completed", "run_dir": str(run_dir), "identity": ident, **extra}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "result.json").write_text(json.dumps(rec), encoding="utf-8")
    return rec


def test_plan_reports_completed_and_run_skips_them(tmp_path: Path):
    """A completed result.json in a planned folder: `plan` says completed, and `run()` given that
    folder returns the stored result without building anything."""
    from dcft.experiment import run

    overrides = ["+sweep=table5", "task=rte", f"output_root={tmp_path}"]
    runs = S.plan(overrides)
    done, failed = Path(runs[0].run_dir), Path(runs[1].run_dir)
    cfg = compose_cfg(runs[0].overrides)
    stored = _completed(done, cfg)
    failed.mkdir(parents=True)
    (failed / "result.json").write_text(json.dumps({"status": "failed", "error": {"type": "ValueError",
                                                                                  "message": "x"}}), encoding="utf-8")
    again = S.plan(overrides)
    assert [r.status for r in again] == ["completed", "failed", "new", "new"]
    assert again[1].detail == "ValueError: x"
    assert run(cfg, done) == {**stored, "outcome": "reused"}


def test_plan_single_run_and_cli(tmp_path: Path, capsys):
    runs = S.plan(["task=rte", "kernel=8", f"output_root={tmp_path}"])
    assert len(runs) == 1 and runs[0].run_dir.startswith(
        str(tmp_path / "deberta-v3-base" / "rte" / "dcft" / "kernel=8,stride=8,targets=all,lr=0.0012,seed=6-"))
    assert S.main(["plan", "+sweep=table3_dcft", f"output_root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 runs: 2 new; a launch runs 2, skips 0 completed")
    assert str(tmp_path / "deberta-v3-base" / "squad_v2" / "dcft" / "kernel=2,stride=2,targets=all,lr=") in out
    assert S.main(["list"]) == 0
    assert re.search(r"table4\s+30 runs\s+python run.py \+sweep=table4", capsys.readouterr().out)


def test_slurm_launcher_config():
    import hydra_plugins.hydra_submitit_launcher  # noqa: F401 - installed (pyproject extra `slurm`)

    cfg = compose_cfg(["+sweep=table5", "hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.partition and launcher.timeout_min > 0
    assert launcher.array_parallelism > 0
    text = (ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if re.match(r"^[a-z_]+:", line) and not line.startswith("defaults:"):
            assert "#" in line, f"uncommented key: {line}"


def _precomplete(tmp_path: Path, overrides: list[str]) -> list[Path]:
    runs = S.plan(overrides)
    for r in runs:
        _completed(Path(r.run_dir), compose_cfg(r.overrides))
    return [Path(r.run_dir) for r in runs]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_relaunch_skips_completed_runs_end_to_end(tmp_path: Path, launcher: str):
    """`python run.py +sweep=...` over folders whose runs completed trains nothing (and, through the
    submitit launcher, the pickled jobs find the same folders)."""
    overrides = ["+sweep=table5", "task=rte", f"output_root={tmp_path}"]
    dirs = _precomplete(tmp_path, overrides)
    cmd = [sys.executable, "run.py", *overrides]
    if launcher != "basic":
        cmd += [f"hydra/launcher={launcher}", "hydra.launcher.timeout_min=10"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = proc.stdout
    if launcher != "basic":
        logs = "".join(p.read_text() for p in (tmp_path / ".submitit").rglob("*_log.out"))
    assert logs.count("is already completed") == len(dirs) == 4
    for d in dirs:
        assert json.loads((d / "result.json").read_text())["run_dir"] == str(d)
    found = {p.parent for p in tmp_path.rglob("result.json")}
    assert found == set(dirs)  # no other run folder was created
