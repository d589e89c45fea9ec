"""A run's console and its experiment tracker: `train.progress=false` silences every
bar, library load reports go to `run.log` (which holds the run's console output) instead of the
terminal, the summary names preset, lr, steps/epochs and smoke, and `logger=tensorboard` writes
losses, learning rate, evaluations, parameter counts and the config, read back from the event file."""

from __future__ import annotations

import json
import logging
import sys
import warnings

import pytest

from conftest import compose_cfg
from dcft.harness import console, tracking
from dcft.harness.experiment import run
from test_experiment import write_learnable_rte

TINY = ["model=tiny-bert", "task=rte", "method=dcft", "kernel=8", "train.batch_size=8", "data.limit_train=24",
        "data.limit_eval=8", "train.max_len=32", "train.log_steps=1", "train.eval_steps=2", "train.max_steps=3"]


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    return write_learnable_rte(tmp_path_factory.mktemp("glue"), n_train=32, n_dev=8)


def test_quiet_minilm_run_keeps_library_reports_in_run_log(glue_dir, tmp_path, capfd):
    """Real pretrained MiniLM: its transformers LOAD REPORT (new classifier) and the tokenisation
    bars are not on the terminal; run.log has the report and the summary."""
    over = TINY[1:] + ["model=minilm", "preset=none", "train.progress=false", "logger=none", f"data.glue_dir={glue_dir}"]
    rec = run(compose_cfg(over), tmp_path / "r", choices={"preset": "none", "debug": None})
    out, err = capfd.readouterr()
    assert rec["status"] == "completed"
    assert "LOAD REPORT" not in err + out and "tokenize" not in err and "Loading weights" not in err
    assert "it/s" not in err and "examples/s" not in err  # no progress bar of any library
    assert "== minilm / rte / dcft" in out  # the summary is still shown
    log = (tmp_path / "r" / "run.log").read_text()
    assert "LOAD REPORT" in log and "classifier" in log and "\x1b[" not in log
    assert "== minilm / rte / dcft" in log and "trained 3 optimizer steps" in log
    assert not (tmp_path / "r" / "tracking").exists()  # logger=none


def test_progress_true_shows_the_bars(glue_dir, tmp_path, capfd):
    """The other side of the switch: the same run with progress bars shows them (so the quiet test
    above can fail), and run.log keeps each bar once, in its last state."""
    run(compose_cfg(TINY + ["train.progress=true", "logger=none", f"data.glue_dir={glue_dir}"]), tmp_path / "r")
    err = capfd.readouterr().err
    assert "tokenize rte" in err and "\r" in err
    log = (tmp_path / "r" / "run.log").read_text()
    assert "\r" not in log and log.count("tokenize rte") == 2  # train and validation, one line each


def test_console_restores_everything(tmp_path):
    before = (sys.stdout, sys.stderr, warnings.showwarning, logging.getLogger("transformers").handlers[:],
              console.progress_bars_enabled())
    with console.RunConsole(tmp_path / "r", progress=False):
        assert console.progress_bars_enabled() == dict.fromkeys(before[-1], False)
        print("hello from the run")
        logging.getLogger("transformers.modeling_utils").warning("a load report")
        warnings.warn_explicit("library noise", UserWarning, "/x/site-packages/lib/mod.py", 3)
    after = (sys.stdout, sys.stderr, warnings.showwarning, logging.getLogger("transformers").handlers[:],
             console.progress_bars_enabled())
    assert after == before
    log = (tmp_path / "r" / "run.log").read_text()
    assert "hello from the run" in log and "a load report" in log and "library noise" in log


def test_a_failed_run_leaves_its_reason_in_run_log(tmp_path):
    with pytest.raises(RuntimeError):
        with console.RunConsole(tmp_path / "r", progress=False):
            print("started")
            raise RuntimeError("out of memory at step 3")
    assert (tmp_path / "r" / "run.log").read_text() == "started\nrun failed: RuntimeError: out of memory at step 3\n"


def test_tee_logs_a_redrawn_line_once_in_its_last_state(tmp_path):
    import io

    term, f = io.StringIO(), io.StringIO()
    tee = console.Tee(term, f)
    tee.write("bar  0%\rbar 50%\rbar 100%\n")
    tee.write("plain line\nhalf")
    tee.finish()
    assert term.getvalue() == "bar  0%\rbar 50%\rbar 100%\nplain line\nhalf"
    assert f.getvalue() == "bar 100%\nplain line\nhalf\n"


def test_help_text_is_the_whole_first_paragraph():
    doc = "`make x`: one sentence that\nwraps onto a second line.\n\n    usage\n"
    assert console.help_text(doc) == "`make x`: one sentence that wraps onto a second line."


@pytest.mark.parametrize("module", ["dcft.report.tables", "dcft.report.figures", "dcft.measure.params", "dcft.report.results"])
def test_cli_help_ends_a_sentence(module, capsys):
    import importlib

    mod = importlib.import_module(module)
    with pytest.raises(SystemExit):
        mod.main(["--help"])
    out = capsys.readouterr().out
    desc = out.split("\n\n")[1].replace("\n", " ").strip()
    assert desc.endswith((".", ")")), desc


def test_tensorboard_event_file_holds_the_run(glue_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install tensorboard (in the dev extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rec = run(compose_cfg(TINY + ["train.progress=false", "logger=tensorboard", f"data.glue_dir={glue_dir}"]),
              tmp_path / "r")
    logdir = tmp_path / "r" / "tracking" / "dcft-rte"  # the tracker project: the run's method and task
    assert sorted(p.name for p in (tmp_path / "r" / "tracking").iterdir()) == ["dcft-rte"]
    events = sorted(logdir.glob("events.out.tfevents.*"))
    assert events, sorted(p.name for p in logdir.iterdir())
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    scal = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    train = [r for r in map(json.loads, (tmp_path / "r" / "log.jsonl").read_text().splitlines()) if r["type"] == "train"]
    for key in ("loss", "task_loss", "reg_loss", "lr"):
        assert [s for s, _ in scal[f"train/{key}"]] == [r["step"] for r in train] == [1, 2, 3]
        assert [v for _, v in scal[f"train/{key}"]] == pytest.approx([r[key] for r in train], rel=1e-6, abs=1e-9)
    hist = rec["metrics"]["history"]
    assert [s for s, _ in scal["eval/score"]] == [h["step"] for h in hist] == [2, 3]
    # scores as a person reads them: x100 (the result file keeps the fraction)
    assert [v for _, v in scal["eval/validation/accuracy"]] == pytest.approx([100 * h["validation/accuracy"] for h in hist])
    assert scal["params/method"] == [(0, 936.0)]  # 2 layers x (4 x (6 + 6 + 64) + 2 x (6 + 12 + 64))


def test_tensorboard_hparams_session_carries_the_final_metrics(glue_dir, tmp_path):
    """One HParams session per run, in the run's own event folder, declaring the final metrics, whose
    values are there as scalars: TensorBoard's HParams tab can sort runs by score."""
    pytest.importorskip("tensorboard", reason="pip install tensorboard (in the dev extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    rec = run(compose_cfg(TINY + ["train.progress=false", "logger=tensorboard", f"data.glue_dir={glue_dir}"]),
              tmp_path / "r")
    logdir = tmp_path / "r" / "tracking" / "dcft-rte"
    sessions = [p for p in logdir.rglob("events.out.tfevents.*")
                if b"_hparams_/session_start_info" in p.read_bytes()]
    assert len(sessions) == 1 and sessions[0].parent == logdir, sessions  # no second, metric-less session
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    declared = {m.name.tag for m in experiment.metric_infos}
    best = rec["metrics"]["best"]
    assert {"best/validation/accuracy", "final/validation/accuracy", "best/step", "train/minutes"} <= declared
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["method.kernel"].number_value == 8 and start.hparams["model.name"].string_value == "tiny-bert"
    scal = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert scal["best/validation/accuracy"] == pytest.approx([100 * best["validation/accuracy"]])
    assert scal["best/step"] == [best["step"]]


def test_unknown_or_missing_tracker_is_a_clear_error():
    class L:
        name, dir = "tensorbord", None

    with pytest.raises(ValueError, match=r"logger.name='tensorbord'; valid: auto, none, tensorboard, wandb"):
        tracking.accelerator_kwargs(L, "/tmp/x")
    if not tracking.available("wandb"):
        L.name = "wandb"
        with pytest.raises(ValueError, match="pip install wandb"):
            tracking.accelerator_kwargs(L, "/tmp/x")
    L.name = "none"
    assert tracking.accelerator_kwargs(L, "/tmp/x") == {}


def test_missing_tracker_is_rejected_in_the_checks_before_a_run_starts():
    if tracking.available("wandb"):
        pytest.skip("wandb is installed here: nothing to reject")
    from dcft.harness.experiment import precheck

    with pytest.raises(ValueError, match="pip install wandb"):
        precheck(compose_cfg(["model=tiny-bert", "task=rte", "logger=wandb"]))
