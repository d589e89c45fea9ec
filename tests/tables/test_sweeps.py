"""The paper-table sweeps (`conf/sweep/`), their dry run (`dcft.harness.sweep plan`), the SLURM launcher
config, and the skipping of finished runs on relaunch."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from dcft.harness import sweep as S

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
}


LR_NAME = re.compile(r"(table[123])_lr_([a-z0-9.-]+)_([a-z]+)_([0-9.]+e-[0-9]{2})")  # <table>_lr_<model>_<method>_<rate>
LR_SWEEPS = sorted(p.stem for p in SWEEPS.glob("*_lr_*.yaml"))  # written by scripts/method_hp.py
ALL_SWEEPS = sorted(EXPECTED_RUNS) + LR_SWEEPS


def _params(name: str) -> dict:
    return dict(OmegaConf.load(SWEEPS / f"{name}.yaml").hydra.sweeper.params)


def _values(params: dict, key: str) -> list[str]:
    return str(params[key]).split(",") if key in params else [""]


def test_every_sweep_file_is_known():
    assert sorted(p.stem for p in S.sweep_files() if "_lr_" not in p.stem) == sorted(EXPECTED_RUNS)
    assert LR_SWEEPS and all(LR_NAME.fullmatch(n) for n in LR_SWEEPS), LR_SWEEPS


@functools.lru_cache(maxsize=None)
def _make_dry_run(target: str) -> str:
    return subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("name", ALL_SWEEPS)
def test_sweep_file_header_and_size(name: str):
    path = SWEEPS / f"{name}.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# @package _global_"  # Hydra reads the header only up to the first other line
    assert lines[1].startswith(f"# python run.py +sweep={name}")  # then the command that runs it
    cfg = OmegaConf.load(path)
    assert cfg.hydra.mode == "MULTIRUN"
    assert name.split("_")[0] in ("table1", "table2", "table3", "table4", "table5", "table6", "figures")
    if name in EXPECTED_RUNS:
        assert S.count_runs(path) == EXPECTED_RUNS[name]
        assert f"+sweep={name}" in (ROOT / "Makefile").read_text(encoding="utf-8")  # a make target runs it
    else:  # the table's -lr target runs every one of its lr sweeps (a loop over the files)
        p = _params(name)
        assert S.count_runs(path) == len(_values(p, "train.lr")) * len(_values(p, "task")) * len(_values(p, "kernel"))
        assert name in re.split(r"[\s;]+", _make_dry_run(f"{name.split('_')[0]}-lr"))


def test_dcft_sweeps_spell_out_the_setting():
    """Every DCFT sweep names kernel, stride and targets, so one setting = one run folder."""
    for name in ALL_SWEEPS:
        p = _params(name)
        if p["method"] == "dcft":
            assert {"kernel", "stride", "targets", "seed"} <= set(p), name
        else:
            assert not {"kernel", "stride"} & set(p), name  # baselines: no DCFT keys in their folders


# ---- learning-rate tuning: the same for every method of a table, DCFT included ------------------------
GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
V3, RL, XXL = "deberta-v3-base", "roberta-large", "deberta-v2-xxlarge"


def _rows(model: str, methods: str, kernels: str, tasks: tuple[str, ...]) -> set[tuple[str, str, str, str]]:
    """(model, task, method, DCFT kernel or "") of a table's rows x columns."""
    rows = [(m, "") for m in methods.split()] + [("dcft", k) for k in kernels.split()]
    return {(model, t, m, k) for m, k in rows for t in tasks}


# Every row x column of the paper's Tables 1-3 (typed from the paper, not read from conf/): each is tuned.
TUNED = {
    "table1": _rows(V3, "full bitfit hadapter padapter lora sora lorafa", "2 8", GLUE)
    | _rows(RL, "full hadapter padapter lora lorafa", "2 8", GLUE),
    "table2": _rows(XXL, "full lora", "8", ("cola", "sst2", "stsb", "qnli")),
    "table3": _rows(V3, "full hadapter padapter lora", "2", ("squad", "squad_v2")),
}


def _lr_points(table: str) -> list[tuple[tuple[str, str, str, str], str]]:
    """Every (model, task, method, kernel) an lr sweep of `table` tunes, with the sweep's name."""
    out = []
    for name in (n for n in LR_SWEEPS if n.startswith(f"{table}_")):
        p = _params(name)
        out += [((m, t, meth, k), name) for m in _values(p, "model") for t in _values(p, "task")
                for meth in _values(p, "method") for k in _values(p, "kernel")]
    return out


def _lr_sweep_of(model: str, method: str, task: str) -> str:
    found = {n for table in TUNED for pt, n in _lr_points(table) if pt[:3] == (model, task, method)}
    assert len(found) == 1, (model, method, task, found)
    return found.pop()


@pytest.mark.parametrize("table", sorted(TUNED))
def test_lr_sweeps_tune_every_row_of_the_table_dcft_included(table: str):
    """DCFT's rows have learning-rate grids as every baseline's; no point is tuned twice or left out."""
    points = [pt for pt, _ in _lr_points(table)]
    assert len(points) == len(set(points)), "a point is in two lr sweeps"
    assert set(points) == TUNED[table]


@pytest.mark.parametrize("name", LR_SWEEPS)
def test_lr_grid_is_centred_on_each_tasks_source_rate(name: str):
    """For every task of the sweep, the rate a run gets without a sweep (the composed config: DCFT's
    preset or the baseline's own file) is in the grid, with as many grid rates below it as above."""
    p = _params(name)
    grid = [float(x) for x in _values(p, "train.lr")]
    assert grid == sorted(grid) and len(set(grid)) == len(grid)
    for (model, task), rate in _composed_rates(str(p["method"]), _values(p, "model"), _values(p, "task")).items():
        assert any(g == pytest.approx(rate, rel=1e-9) for g in grid), (task, rate, grid)
        below = sum(g < rate * (1 - 1e-9) for g in grid)
        above = sum(g > rate * (1 + 1e-9) for g in grid)
        assert below == above >= 1, (task, rate, grid)


def _composed_rates(method: str, models: list[str], tasks: list[str]) -> dict[tuple[str, str], float]:
    """`train.lr` of each model x task as `run.py` composes it (conftest.compose_cfg, one Hydra init for all)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dcft.harness.config import register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return {(m, t): float(compose("config", [f"model={m}", f"task={t}", f"method={method}"]).train.lr)
                    for m in models for t in tasks}
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("model,method,task,grid", [
    (XXL, "lora", "sst2", [5e-5, 6e-5, 8e-5]),  # source 6e-5; a grid shared with CoLA's 1.3e-4 had 1 rate below, 5 above
    (V3, "dcft", "stsb", [2e-3, 2.2e-3, 3e-3]),  # the authors' 2.2e-3, off the ladder: its ladder neighbours
    (V3, "full", "mnli", [1e-5, 1.5e-5, 2e-5]),  # DeBERTa's deberta-v3-base MNLI block
    (RL, "lora", "qnli", [1e-4, 2e-4, 3e-4]),  # LoRA repository roberta_large_qnli.sh: 2e-4
    (V3, "hadapter", "squad", [8e-4, 1e-3, 2e-3]),  # no source rate: the preset's 1e-3
])
def test_a_tasks_grid_by_hand(model: str, method: str, task: str, grid: list[float]):
    got = [float(x) for x in _values(_params(_lr_sweep_of(model, method, task)), "train.lr")]
    assert got == pytest.approx(grid, rel=1e-9)


@pytest.mark.parametrize("one_rate,model,method,task", [
    ("table1_dcft", V3, "dcft", "rte"),
    ("table1_baselines_roberta", RL, "lora", "qnli"),
])
def test_lr_sweep_reuses_the_one_rate_run_at_its_centre(one_rate: str, model: str, method: str, task: str,
                                                         tmp_path: Path):
    """The table's one-rate sweep runs the centre of the lr grid: the same folders, so it runs once."""
    point = [f"model={model}", f"task={task}", f"method={method}", f"output_root={tmp_path}"]
    single = S.plan([f"+sweep={one_rate}", *point], validate=False)
    tuned = S.plan([f"+sweep={_lr_sweep_of(model, method, task)}", *point], validate=False)
    assert single and {r.run_dir for r in single} <= {r.run_dir for r in tuned}
    assert len(tuned) == 3 * len(single)


def test_command_line_overrides_replace_sweep_values():
    path = SWEEPS / "table4.yaml"
    assert S.count_runs(path, ["task=rte,cola"]) == 2 * 5
    assert S.count_runs(path, ["seed=6,7,8"]) == 6 * 5 * 3


@pytest.mark.parametrize("name", ALL_SWEEPS)
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

    from dcft.harness.experiment import precheck
    from dcft.harness.identity import effective_config

    method, task = precheck(cfg)
    ident = effective_config(OmegaConf.to_container(cfg, resolve=True), task, method.revision)
    rec = {"status": "completed", "run_dir": str(run_dir), "identity": ident, **extra}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "result.json").write_text(json.dumps(rec), encoding="utf-8")
    return rec


def test_plan_reports_completed_and_run_skips_them(tmp_path: Path):
    """A completed result.json in a planned folder: `plan` says completed, and `run()` given that
    folder returns the stored result without building anything."""
    from dcft.harness.experiment import run

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
