"""Run identity and result integrity: a result always belongs to the configuration that
made it. Each "what was seen" case of the issue is a test here; every one failed on the harness
that named folders from command-line overrides and reused any completed result in them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, compose_cfg
from dcft.harness import identity
from dcft.report import results
from dcft.harness import sweep as S
from dcft.harness.experiment import run
from dcft.harness.reuse import PresetMissing, RunInUse, RunRefused
from test_experiment import TINY_RUN, write_learnable_rte

SMOKE = TINY_RUN + ["debug=smoke", "method=dcft"]


@pytest.fixture
def glue(tmp_path):
    return write_learnable_rte(tmp_path / "glue", n_train=64, n_dev=32)


def _folder(overrides: list[str], root: Path) -> str:
    (r,) = S.plan(overrides + [f"output_root={root}"], validate=False)
    return r.run_dir


# ------------------------------------------------------------------------------------------------
# The declared configuration and its hash, against hand-written values
# ------------------------------------------------------------------------------------------------


def test_declared_configuration_normalises_what_does_not_change_the_run():
    resolved = {
        "model": {"name": "m", "path": "/x", "hub_id": "org/m", "tokenizer": None, "source": "pretrained",
                  "family": "bert", "arch": {}},
        "task": {"name": "rte", "kind": "glue", "doc_stride": 128, "n_best": 20, "max_answer_length": 30,
                 "null_threshold": 0.0},
        "method": {"name": "dcft", "kernel": 8, "stride": None, "targets": "all"},
        "data": {"glue_dir": "/somewhere", "squad_dir": None, "limit_train": None},
        "train": {"lr": 1e-3, "epochs": 3, "max_steps": 100, "warmup_steps": 10, "warmup_ratio": 0.1,
                  "overwrite": True, "progress": False, "checkpoint_steps": 5, "device": "cpu", "log_steps": 1,
                  "eval_batch_size": 64, "batch_size": 16},
        "kernel": 8, "stride": None, "targets": "all", "dcft_hp": {"alpha": 32.0}, "seed": 6,
        "output_root": "/out", "logger": {"name": "none"},
    }
    assert identity.declared_config(resolved) == {
        "model": {"name": "m", "source": "pretrained", "family": "bert", "arch": {}},
        "task": {"name": "rte", "kind": "glue"},
        "method": {"name": "dcft", "kernel": 8, "stride": 8, "targets": "all"},  # stride null = kernel
        "data": {"limit_train": None},
        "train": {"lr": 1e-3, "max_steps": 100, "warmup_steps": 10, "batch_size": 16},  # epochs, ratio unused
        "seed": 6,
    }



def test_group_by_length_is_part_of_identity_only_when_on():
    # added after runs existed: false (the plain shuffle every older run used) keeps their identity
    base = {"task": {"name": "rte", "kind": "glue"}, "train": {"lr": 1e-3, "batch_size": 16}}
    off = {"task": {"name": "rte", "kind": "glue"}, "train": {"lr": 1e-3, "batch_size": 16, "group_by_length": False}}
    on = {"task": {"name": "rte", "kind": "glue"}, "train": {"lr": 1e-3, "batch_size": 16, "group_by_length": True}}
    assert identity.declared_config(off) == identity.declared_config(base) == base
    assert identity.declared_config(on)["train"]["group_by_length"] is True

def test_folder_name_is_the_label_and_the_sha256_of_the_canonical_json():
    declared = {"method": {"name": "lora", "r": 1, "targets": "qv"}, "model": {"name": "m"},
                "seed": 3, "task": {"name": "rte"}, "train": {"lr": 0.0005}}
    text = '{"method":{"name":"lora","r":1,"targets":"qv"},"model":{"name":"m"},"seed":3,"task":{"name":"rte"},' \
           '"train":{"lr":0.0005}}'
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    assert identity.run_subdir(declared) == f"m/rte/lora/r=1,targets=qv,lr=0.0005,seed=3-{digest}"


def test_data_fingerprint_is_the_sha256_of_each_file_read(glue):
    from dcft.tasks.glue import GlueTask

    fp = identity.data_fingerprint(GlueTask("rte", glue_dir=str(glue)))
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        want = hashlib.sha256((glue / "RTE" / name).read_bytes()).hexdigest()[:16]
        assert fp["files"][split] == {"file": name, "sha256": want}


def test_sampled_weight_fingerprint_sees_a_change_in_a_large_file(tmp_path):
    big = tmp_path / "model.safetensors"
    big.write_bytes(bytes(70 * 2**20))
    before = identity.file_sha256(big, sampled=True)
    with big.open("r+b") as f:  # one byte inside the first sampled block
        f.seek(10)
        f.write(b"\x01")
    assert identity.file_sha256(big, sampled=True) != before


# ------------------------------------------------------------------------------------------------
# Case 1: a completed result is reused only by its own configuration
# ------------------------------------------------------------------------------------------------


def test_another_kernel_in_the_same_folder_is_refused_not_reused(glue, tmp_path):
    """The seen case: a kernel-8 result returned for a command that resolves to kernel 2."""
    first = run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), tmp_path / "run")
    assert first["outcome"] == "trained"
    with pytest.raises(RunRefused) as e:
        run(compose_cfg(SMOKE + ["kernel=2", f"data.glue_dir={glue}"]), tmp_path / "run")
    assert "method.kernel: 8 -> 2" in str(e.value) and "train.overwrite=true" in str(e.value)
    assert results.read_result(tmp_path / "run")["finished_at"] == first["finished_at"]  # untouched
    again = run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), tmp_path / "run")
    assert again["outcome"] == "reused" and again["finished_at"] == first["finished_at"]


def test_other_data_files_are_refused_and_a_folder_without_dev_is_an_error(glue, tmp_path):
    run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), tmp_path / "run")
    other = write_learnable_rte(tmp_path / "other", n_train=64, n_dev=32, seed=1)
    with pytest.raises(RunRefused) as e:
        run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={other}"]), tmp_path / "run")
    assert "inputs.data.files.train.sha256" in str(e.value)
    (other / "RTE" / "dev.tsv").unlink()
    with pytest.raises(Exception, match="dev.tsv"):
        run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={other}"]), tmp_path / "run")
    csv_only = tmp_path / "csv" / "RTE"
    csv_only.mkdir(parents=True)
    (csv_only / "train.csv").write_text("a,b\n")
    with pytest.raises(Exception, match="train.tsv"):
        run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={csv_only.parent}"]), tmp_path / "run")


def test_a_copy_of_the_same_data_elsewhere_is_the_same_run(glue, tmp_path):
    import shutil

    first = run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), tmp_path / "run")
    copy = Path(shutil.copytree(glue, tmp_path / "copy"))
    again = run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={copy}"]), tmp_path / "run")
    assert again["outcome"] == "reused" and again["finished_at"] == first["finished_at"]


def test_a_changed_preset_value_gets_another_folder_and_is_refused_in_the_old_one(tmp_path, glue):
    """Editing conf/hp/... changes the composed learning rate: another folder; forced into the old
    folder, the launch is refused, never reused; under overwrite it re-runs."""
    base = ["model=tiny-bert", "preset=none", "task=rte", "method=dcft", "kernel=8", "debug=smoke",
            "train.progress=false", f"data.glue_dir={glue}"]
    assert _folder(base + ["train.lr=1e-3"], tmp_path) != _folder(base + ["train.lr=2e-3"], tmp_path)
    run(compose_cfg(base + ["train.lr=1e-3"]), tmp_path / "run")
    with pytest.raises(RunRefused, match=r"train.lr: 0.001 -> 0.002"):
        run(compose_cfg(base + ["train.lr=2e-3"]), tmp_path / "run")
    forced = run(compose_cfg(base + ["train.lr=2e-3", "train.overwrite=true"]), tmp_path / "run")
    assert forced["outcome"] == "trained" and forced["config"]["train"]["lr"] == 2e-3


def test_a_newer_method_revision_is_refused(glue, tmp_path, monkeypatch):
    from dcft.methods.dcft.method import DCFT

    run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), tmp_path / "run")
    monkeypatch.setattr(DCFT, "revision", DCFT.revision + 1)
    with pytest.raises(RunRefused, match="code.method"):
        run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), tmp_path / "run")


def test_old_results_without_identity_are_refused_with_the_migration_advice(glue, tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "result.json").write_text(json.dumps({"status": "completed"}))
    with pytest.raises(RunRefused, match="migrate_runs.py"):
        run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), d)


def test_checkpoint_of_another_configuration_names_the_differing_key(glue, tmp_path):
    from dcft.harness.checkpoint import Checkpointer, CheckpointMismatch
    from dcft.harness.train import TrainState

    a = {"declared": {"train": {"lr": 1.0}}, "inputs": {}, "code": {"loop": 1}}
    b = {"declared": {"train": {"lr": 2.0}}, "inputs": {}, "code": {"loop": 1}}

    class Nothing:
        def state_dict(self, model):
            return {}

        def training_state(self):
            return {}

    class Opt:
        def state_dict(self):
            return {}

    Checkpointer(tmp_path, Nothing(), a)(TrainState(step=1), None, Opt(), Opt())
    with pytest.raises(CheckpointMismatch, match=r"train.lr: 1.0 -> 2.0"):
        Checkpointer(tmp_path, Nothing(), b).restore(TrainState(), None, Opt(), Opt())


# ------------------------------------------------------------------------------------------------
# Case 2: one configuration, one folder; unused keys normalised away
# ------------------------------------------------------------------------------------------------


def test_one_configuration_written_three_ways_is_one_folder(tmp_path):
    base = ["model=minilm", "preset=cpu", "task=rte", "method=dcft"]
    folders = {_folder(base + extra, tmp_path) for extra in (
        ["kernel=8"], ["kernel=8", "stride=8"], ["kernel=8", "seed=6", "stride=null", "targets=all"])}
    assert len(folders) == 1


def test_lora_crossed_with_kernels_is_one_run_and_the_rest_are_duplicates(tmp_path):
    runs = S.plan(["model=minilm", "preset=cpu", "task=rte", "method=dcft,lora", "kernel=2,4,8",
                   f"output_root={tmp_path}"], multirun=True)
    lora = [r for r in runs if "/lora/" in r.run_dir]
    assert len({r.run_dir for r in lora}) == 1
    assert sorted(r.status for r in lora) == ["duplicate", "duplicate", "new"]
    assert len({r.run_dir for r in runs if "/dcft/" in r.run_dir}) == 3


def test_kernel_and_stride_on_lora_are_named_and_ignored(glue, tmp_path, capsys):
    base = TINY_RUN + ["debug=smoke", "method=lora", f"data.glue_dir={glue}"]
    assert _folder(base + ["kernel=8", "stride=2"], tmp_path) == _folder(base, tmp_path)
    run(compose_cfg(base + ["kernel=8", "stride=2"]), tmp_path / "run", overridden=["kernel", "stride"])
    assert "method=lora does not use kernel, stride: ignored" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# Case 4: sweeps tell the truth
# ------------------------------------------------------------------------------------------------


def test_plan_marks_points_that_would_fail_at_launch(tmp_path):
    runs = S.plan(["model=minilm", "preset=cpu", "task=rte", "method=dcft", "kernel=2,8", "stride=8",
                   f"output_root={tmp_path}"], multirun=True)
    status = {r.run_dir.rsplit("/", 1)[-1].split(",")[0]: r for r in runs}
    assert status["kernel=2"].status == "invalid" and "stride" in status["kernel=2"].detail
    assert status["kernel=8"].status == "new"


def test_sweep_with_failing_points_exits_non_zero_with_a_summary(glue, tmp_path):
    env_cmd = [sys.executable, str(ROOT / "run.py"), "-m", *[a for a in TINY_RUN if not a.startswith("train.max_steps")],
               "method=dcft", "kernel=0,7", "debug=smoke", f"data.glue_dir={glue}", f"output_root={tmp_path / 'o'}"]
    p = subprocess.run(env_cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert p.returncode == 1, p.stderr[-2000:]
    assert "== sweep: 2 jobs: 2 failed" in p.stdout, p.stdout[-2000:]
    assert p.stdout.count("   failed: ") == 2 and "kernel=7" in p.stdout and "kernel=0" in p.stdout
    assert not list((tmp_path / "o").rglob("*.json"))  # rejected points left no folder


# ------------------------------------------------------------------------------------------------
# Case 5: hyperparameter provenance
# ------------------------------------------------------------------------------------------------


def test_preset_without_a_file_is_an_error_naming_the_file_and_the_choices(glue, tmp_path):
    cfg = compose_cfg(["model=minilm", "task=rte", "preset=authors", f"data.glue_dir={glue}"])
    with pytest.raises(PresetMissing) as e:
        run(cfg, tmp_path / "run", choices={"preset": "authors", "hp@_global_": "authors/minilm/rte"})
    msg = str(e.value)
    assert "preset=authors" in msg and "conf/hp/authors/minilm/rte.yaml" in msg
    assert "preset=cpu" in msg and "preset=none" in msg
    assert not (tmp_path / "run").exists()


def test_result_records_the_preset_file_used_or_none(glue, tmp_path):
    rec = run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), tmp_path / "a",
              choices={"preset": "none", "hp@_global_": "none/tiny-bert/rte"})
    assert rec["hp_sources"]["hp@_global_"] is None
    from dcft.harness.reuse import hp_sources

    assert hp_sources({"preset": "cpu", "hp@_global_": "cpu/minilm/rte"}) == {"hp@_global_": "conf/hp/cpu/minilm/rte.yaml"}


# ------------------------------------------------------------------------------------------------
# Two launches of one run at once
# ------------------------------------------------------------------------------------------------


def test_a_second_launch_of_a_running_run_is_refused_and_changes_nothing(glue, tmp_path):
    d = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dcft.harness.reuse import RunLock\n"
                               f"with RunLock({str(d)!r}):\n    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (d / "result.json").write_text(json.dumps({"status": "running", "marker": 1}))
        with pytest.raises(RunInUse) as e:
            run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), d)
        assert f"pid {holder.pid}" in str(e.value)
        assert json.loads((d / "result.json").read_text()) == {"status": "running", "marker": 1}
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)  # the kernel drops a dead process's lock: the relaunch now trains
    assert run(compose_cfg(SMOKE + ["kernel=8", f"data.glue_dir={glue}"]), d)["outcome"] == "trained"
