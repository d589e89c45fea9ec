"""End to end: `run.py` on a tiny model and a small learnable task written in GLUE layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, compose_cfg
from dcft.report import results
from dcft.data.toy import write_learnable_rte
from dcft.harness.experiment import run

TINY_RUN = ["model=tiny-bert", "preset=none", "task=rte", "train.max_steps=40", "train.batch_size=16", "train.lr=1e-2",
            "train.eval_steps=20", "train.max_len=48", "train.progress=false", "train.max_grad_norm=1.0"]


@pytest.fixture
def glue_dir(tmp_path):
    return write_learnable_rte(tmp_path / "glue")


def test_dcft_run_learns_and_writes_a_complete_result(glue_dir, tmp_path):
    cfg = compose_cfg(TINY_RUN + ["method=dcft", "kernel=8", f"data.glue_dir={glue_dir}"])
    rec = run(cfg, tmp_path / "run", choices={"method": "dcft"})
    on_disk = results.read_result(tmp_path / "run")
    assert on_disk["status"] == "completed" and on_disk == json.loads(json.dumps(on_disk))
    for key in ("config", "metrics", "params", "train", "memory", "device", "environment", "wall_time_s"):
        assert key in on_disk, key
    # 2 layers x (4 x (48/8 + 48/8 + 8^2) + 2 x (48/8 + 96/8 + 8^2)) = 2 x (304 + 164) = 936
    assert on_disk["params"]["method"] == 936
    best = on_disk["metrics"]["best"]
    assert best["validation/accuracy"] > 0.75, best  # chance is ~0.5
    assert [h["step"] for h in on_disk["metrics"]["history"]] == [20, 40]
    assert on_disk["train"]["steps"] == 40 and on_disk["train"]["steps_per_s"] > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["type"] for r in log} >= {"start", "train", "eval", "end"}
    assert rec["metrics"]["best"]["score"] == best["score"]


def test_same_seed_twice_gives_the_same_metrics(glue_dir, tmp_path):
    over = TINY_RUN + ["method=dcft", "kernel=4", "train.max_steps=10", "train.eval_steps=5",
                       f"data.glue_dir={glue_dir}"]
    a = run(compose_cfg(over), tmp_path / "a")
    b = run(compose_cfg(over), tmp_path / "b")
    assert a["metrics"]["history"] == b["metrics"]["history"]
    assert a["train"]["final_loss"] == b["train"]["final_loss"]


def test_bad_kernel_is_rejected_before_data_and_leaves_no_run_folder(tmp_path):
    cfg = compose_cfg(TINY_RUN + ["method=dcft", "kernel=7", "data.glue_dir=/nonexistent/glue"])
    with pytest.raises(ValueError) as e:
        run(cfg, tmp_path / "run")
    assert "kernel" in str(e.value)  # the adapter's error, not the missing data
    assert not (tmp_path / "run").exists()  # rejected before it started: nothing written


def test_a_run_that_fails_after_it_started_keeps_a_failed_result(glue_dir, tmp_path):
    """Past the checks, a failure (here a NaN loss) writes `failed` with the reason and re-raises."""
    cfg = compose_cfg(TINY_RUN + ["method=dcft", "kernel=8", "debug=smoke", "train.lr=1e30",
                                  f"data.glue_dir={glue_dir}"])
    with pytest.raises(Exception):
        run(cfg, tmp_path / "run")
    rec = results.read_result(tmp_path / "run")
    assert rec["status"] == "failed" and rec["error"]["message"]


def test_missing_data_says_how_to_point_at_a_local_copy(tmp_path):
    cfg = compose_cfg(TINY_RUN + ["method=dcft", "kernel=8", f"data.glue_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(Exception) as e:
        run(cfg, tmp_path / "run")
    assert "glue_dir" in str(e.value) or "nowhere" in str(e.value)
    assert not (tmp_path / "run").exists()  # rejected before any weights or data were loaded


def test_completed_run_is_not_rerun_unless_asked(glue_dir, tmp_path):
    over = TINY_RUN + ["method=dcft", "kernel=8", "debug=smoke", f"data.glue_dir={glue_dir}"]
    first = run(compose_cfg(over), tmp_path / "run")
    again = run(compose_cfg(over), tmp_path / "run")
    assert again["finished_at"] == first["finished_at"]
    forced = run(compose_cfg(over + ["train.overwrite=true"]), tmp_path / "run")
    assert forced["status"] == "completed"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log].count("start") == 1  # the overwritten run's log, not both runs'


def _run_py(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_run_py_sweep_writes_one_result_per_point(glue_dir, tmp_path):
    out = tmp_path / "runs"
    p = _run_py(["-m", "model=tiny-bert", "preset=none", "task=rte", "method=dcft", "kernel=4,8", "stride=null,2", "debug=smoke",
                 f"data.glue_dir={glue_dir}", f"output_root={out}", "train.progress=false"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = [json.loads(f.read_text()) for f in out.rglob("result.json")]
    assert len(recs) == 4 and all(r["status"] == "completed" for r in recs)
    settings = {(r["config"]["method"]["kernel"], r["config"]["method"]["stride"]) for r in recs}
    assert settings == {(4, None), (4, 2), (8, None), (8, 2)}
    assert "== sweep: 4 jobs: 4 trained" in p.stdout
    df = results.load_all(out)
    assert len(df) == 4 and "metrics.best.score" in df.columns


@pytest.mark.slow  # a training launch and a relaunch through run.py: about 17 s
def test_a_relaunch_that_reuses_a_run_leaves_its_hydra_record_as_the_training_launch_wrote_it(glue_dir, tmp_path):
    """Hydra writes its record of every launch into the run folder before the run starts; a relaunch
    that reuses the result must not replace the record of the launch that trained it."""
    out = tmp_path / "runs"
    args = TINY_RUN + ["method=dcft", "kernel=4", "debug=smoke", f"data.glue_dir={glue_dir}", f"output_root={out}"]
    assert _run_py(args, cwd=tmp_path).returncode == 0
    (run_dir,) = [f.parent for f in out.rglob("result.json")]
    first = (run_dir / ".hydra" / "overrides.yaml").read_text()
    p = _run_py(args + ["train.eval_batch_size=8"], cwd=tmp_path)  # not part of the run's identity: reused
    assert p.returncode == 0 and "reused" in p.stdout, p.stderr[-2000:]
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == first and "eval_batch_size" not in first
    assert sorted(x.name for x in run_dir.iterdir() if x.name.startswith(".hydra")) == [".hydra"]


def test_a_refused_launch_drops_its_hydra_record_and_keeps_the_runs(glue_dir, tmp_path):
    from dcft.harness.reuse import RunRefused

    d = tmp_path / "run"
    run(compose_cfg(TINY_RUN + ["method=dcft", "kernel=8", "debug=smoke", f"data.glue_dir={glue_dir}"]), d)
    (d / ".hydra").mkdir()
    (d / ".hydra" / "overrides.yaml").write_text("- kernel=8\n")  # what the training launch's Hydra wrote
    (d / ".hydra-launch").mkdir()
    (d / ".hydra-launch" / "overrides.yaml").write_text("- kernel=2\n")  # this launch's
    with pytest.raises(RunRefused):
        run(compose_cfg(TINY_RUN + ["method=dcft", "kernel=2", "debug=smoke", f"data.glue_dir={glue_dir}"]), d)
    assert (d / ".hydra" / "overrides.yaml").read_text() == "- kernel=8\n" and not (d / ".hydra-launch").exists()


def test_gradient_accumulation_matches_the_larger_batch(glue_dir, tmp_path):
    """2 micro-batches of 16 per optimizer step train the same weights as one batch of 32."""
    import torch

    over = TINY_RUN + ["method=dcft", "kernel=4", "train.max_steps=6", "train.eval_steps=0",
                       "train.checkpoint_steps=6", "+model.arch.hidden_dropout_prob=0.0",
                       "+model.arch.attention_probs_dropout_prob=0.0", "train.cls_dropout=0.0",
                       f"data.glue_dir={glue_dir}"]
    a = run(compose_cfg(over + ["train.batch_size=32"]), tmp_path / "a")
    b = run(compose_cfg(over + ["train.batch_size=16", "train.grad_accum=2"]), tmp_path / "b")
    assert a["train"]["steps"] == b["train"]["steps"] == 6
    assert b["train"]["final_loss"] == pytest.approx(a["train"]["final_loss"], abs=1e-5)
    wa, wb = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=False)["trainable"] for d in "ab")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_sora_run_records_the_live_rank_count_beside_the_nominal(glue_dir, tmp_path):
    rec = run(compose_cfg(TINY_RUN + ["method=sora", "debug=smoke", f"data.glue_dir={glue_dir}"]), tmp_path / "run")
    live = results.read_result(tmp_path / "run")["params"]["after_training"]
    assert rec["params"]["after_training"] == live
    assert live["nominal_params"] == rec["params"]["method"] and 0 <= live["live_params"] <= live["nominal_params"]
    assert rec["train"]["train_with_eval_time_s"] == pytest.approx(rec["train"]["train_time_s"]
                                                                   + rec["train"]["eval_time_s"])
