"""What a new user meets in the first hour: the documented example runs, `run.py --help` is short and
says what the keys mean, a quiet run shows a heartbeat, scores read x100 with their set named and
against chance, times say under which load they were measured, adapters describe themselves, a
missing data folder is one line, and `method.r` is not DCFT's rank. Expected values by hand or from
the fixture files, never from the code under test."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compose_cfg
from dcft.report import results
from dcft.harness.experiment import run
from test_experiment import write_learnable_rte

PY = sys.executable
TINY = ["model=tiny-bert", "preset=none", "task=rte", "method=dcft", "kernel=8", "train.batch_size=8",
        "data.limit_train=24", "train.max_len=32", "train.log_steps=1", "train.eval_steps=2", "train.max_steps=3",
        "train.progress=false", "logger=none"]


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    return write_learnable_rte(tmp_path_factory.mktemp("glue"), n_train=32, n_dev=12, seed=3)


def _dev_labels(glue_dir: Path) -> list[str]:
    rows = list(csv.reader(io.StringIO((glue_dir / "RTE" / "dev.tsv").read_text()), delimiter="\t"))[1:]
    return [r[3] for r in rows]


def _cli(args: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# --- the documented example and model=minilm's preset ---------------------------------------------------
def header_commands() -> list[list[str]]:
    """The `python run.py ...` lines of conf/config.yaml's header, as argument lists."""
    out = []
    for line in (ROOT / "conf" / "config.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"#\s+python run\.py (.*?)(\s+#.*)?$", line)
        if m:
            out.append(m.group(1).split())
    return out


def test_config_header_examples_compose_and_the_offline_one_runs_as_written(glue_dir, tmp_path, capsys):
    cmds = header_commands()
    assert len(cmds) >= 3
    offline = [c for c in cmds if "model=minilm" in c]
    assert offline and all("../shared" not in " ".join(c) for c in cmds)  # nothing a clone does not have
    for args in cmds:  # every example composes (a sweep's first point)
        compose_cfg([a.split("=")[0] + "=" + a.split("=", 1)[1].split(",")[0] for a in args if a != "-m"])
    args = [a.replace("/path/to/glue_data", str(glue_dir)) for a in offline[0]]
    cfg = compose_cfg(args + ["logger=none", f"output_root={tmp_path}", "train.progress=false"])
    rec = run(cfg, tmp_path / "r", choices={"preset": "cpu", "hp@_global_": "cpu/minilm/rte", "debug": "smoke"},
              overridden=[a.split("=")[0] for a in args])
    assert rec["status"] == "completed"
    out = capsys.readouterr().out
    assert "[dcft] model=minilm runs preset=cpu (conf/model/minilm.yaml" in out
    # a real backbone: the adapter names it, its task type and labels, and the run it comes from
    adapter = tmp_path / "r" / "adapter" / "best"
    acfg = json.loads((adapter / "adapter_config.json").read_text())
    assert Path(acfg["base_model_name_or_path"]).is_dir() and (Path(acfg["base_model_name_or_path"]) /
                                                               "config.json").is_file()
    assert acfg["task_type"] == "SEQ_CLS"
    about = json.loads((adapter / "run.json").read_text())
    assert about["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert about["label2id"] == {"entailment": 0, "not_entailment": 1}
    assert about["hash"] == rec["identity"]["hash"] and about["task"] == "rte"  # the run it comes from


def test_minilm_selects_the_cpu_preset_and_a_given_preset_wins():
    cfg = compose_cfg(["model=minilm", "task=rte"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices.preset == "cpu"
    assert cfg.train.lr == pytest.approx(1.2e-3) and cfg.train.max_steps == 400  # conf/hp/cpu/minilm/rte.yaml
    cfg = compose_cfg(["model=minilm", "task=rte", "preset=none"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices.preset == "none" and cfg.train.lr == pytest.approx(5e-4)
    other = compose_cfg(["model=deberta-v3-base", "task=rte"], return_hydra_config=True)
    assert other.hydra.runtime.choices.preset == "authors"  # the default for every other model


# --- python run.py --help ---------------------------------------------------------------------------------------
def test_help_shows_main_keys_with_their_comments_groups_and_five_recipes():
    p = _cli(["--help"], timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) < 100
    text = p.stdout
    assert "table1_lr_deberta-v3-base_full" not in text and "cpu/ablate_sst2_dcft4" not in text  # no sweep list
    by_key = {ln.split()[0]: ln for ln in lines if ln.startswith("  ") and "=" in ln.split()[0]}
    assert "peak learning rate (AdamW)" in by_key["train.lr=5.0e-4"]  # conf/config.yaml's comment, beside the key
    assert "folder of the original GLUE distribution" in by_key["data.glue_dir=null"]
    assert "random seed of the run" in by_key["seed=6"]
    assert re.search(r"method=dcft \| adalora bitfit full hadapter lora lorafa padapter sora", text)
    assert "minilm runs preset=cpu" in text and "+sweep=NAME" in text
    recipes = text.split("== Recipes ==")[1].split("\n\n")[0].splitlines()
    assert len([r for r in recipes if re.match(r"  (python|make) ", r)]) == 5


# --- method.r is LoRA's rank, not DCFT's ---------------------------------------------------------------------------
def test_method_r_on_dcft_is_refused_with_the_keys_to_use(glue_dir, tmp_path):
    with pytest.raises(ValueError) as e:
        run(compose_cfg(TINY + [f"data.glue_dir={glue_dir}", "method.r=8"]), tmp_path / "r", overridden=["method.r"])
    msg = str(e.value)
    assert msg.startswith("method.r=8") and "method.rank" in msg and "dcft_hp.r" in msg and "\n" not in msg
    assert not (tmp_path / "r").exists()
    assert compose_cfg(["method=lora", "method.r=8"]).method.r == 8  # LoRA's rank: accepted
    cfg = compose_cfg(TINY + [f"data.glue_dir={glue_dir}", "dcft_hp.r=8"])  # DCFT's scaling denominator, as presets set it
    from dcft.harness.experiment import precheck

    precheck(cfg)
    assert cfg.method.r == 8


def test_method_r_on_dcft_is_one_line_on_the_command_line(tmp_path):
    p = _cli(["model=tiny-bert", "preset=none", "task=rte", "method=dcft", "method.r=8", f"output_root={tmp_path}"],
             timeout=300)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and "method.rank" in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())


def test_committed_runs_keep_their_folders():
    """Every committed run's folder is the hash of the declared configuration recomputed from its stored
    config (`dcft.harness.identity`), and equals its recorded identity hash: renames would orphan them."""
    from dcft.harness.identity import declared_config, run_name

    files = sorted((ROOT / "results" / "cpu-study" / "runs").rglob("result.json"))
    assert len(files) >= 172
    for f in files:
        rec = json.loads(f.read_text())
        declared = declared_config(rec["config"])
        assert run_name(declared) == f.parent.name, f
        assert rec["identity"]["hash"] == f.parent.name.rsplit("-", 1)[1], f


# --- a run's result file: load, CPU time, chance, predictions; its summary -------------------------------------
@pytest.fixture(scope="module")
def tiny_run(glue_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "r"
    threads = torch.get_num_threads()  # what the run will use (a module fixture: before the test's own setting)
    rec = run(compose_cfg(TINY + [f"data.glue_dir={glue_dir}"]), d)
    return d, rec, threads


def test_result_records_cpu_time_threads_and_load_outside_the_identity(tiny_run):
    d, rec, threads = tiny_run
    m = rec["machine"]
    assert m["torch_threads"] == threads and m["cpu_count"] == os.cpu_count()
    assert 0 < m["cpu_time_s"] and 0 < m["wall_s"] <= rec["wall_time_s"] + 1
    assert len(m["load_start"]) == 3 and len(m["load_end"]) == 3
    from dcft.harness.identity import config_hash, declared_config

    flat = json.dumps(rec["identity"])
    assert "machine" not in flat and "baseline" not in flat and "load_start" not in flat
    assert rec["identity"]["hash"] == config_hash(declared_config(rec["config"]))


def test_chance_level_is_the_dev_majority_class_and_predictions_are_saved(tiny_run, glue_dir):
    d, rec, _ = tiny_run
    labels = _dev_labels(glue_dir)
    majority = max(labels.count("entailment"), labels.count("not_entailment")) / len(labels)
    assert rec["baseline"]["validation/accuracy"] == pytest.approx(majority)
    assert "majority class" in rec["baseline"]["rule"]
    for which, part in (("", "final"), ("best/", "best")):
        rows = list(csv.DictReader(io.StringIO((d / "predictions" / f"{which}validation.tsv").read_text()),
                                   delimiter="\t"))
        assert [int(r["index"]) for r in rows] == list(range(len(labels)))
        assert [r["label"] for r in rows] == labels  # the gold labels of the dev file, by index
        acc = sum(r["prediction"] == r["label"] for r in rows) / len(rows)
        assert acc == pytest.approx(rec["metrics"][part]["validation/accuracy"])


def test_chance_metrics_by_hand():
    from dcft.tasks.glue import chance_metrics

    assert chance_metrics("mrpc", [1, 1, 0]) == pytest.approx({"accuracy": 2 / 3, "f1": 0.8})  # 2PR/(P+R), P=2/3 R=1
    assert chance_metrics("qqp", [0, 0, 1]) == pytest.approx({"accuracy": 2 / 3, "f1": 0.0})
    assert chance_metrics("cola", [0, 1, 1, 1]) == {"matthews_correlation": 0.0}
    assert chance_metrics("stsb", [0.5, 3.0]) == {"pearson": 0.0, "spearmanr": 0.0}
    assert chance_metrics("rte", [0, 1, 0, 1]) == {"accuracy": 0.5}  # a tie: still half


def _record(score_dev: float, score_held: float | None = None, chance: float = 0.527) -> dict:
    best = {"score": score_held if score_held is not None else score_dev, "step": 100,
            "validation/accuracy": score_dev}
    if score_held is not None:
        best["holdout/accuracy"] = score_held
    return {"status": "completed", "config": {"model": {"name": "minilm"}, "task": {"name": "rte"},
                                               "method": {"name": "lora", "r": 1}, "seed": 6,
                                               "data": {"holdout": 0.1 if score_held is not None else 0.0},
                                               "train": {"lr": 1e-3}},
            "metrics": {"best": best, "final": {**best, "step": 400}},
            "baseline": {"rule": "r", "validation/accuracy": chance},
            "train": {"steps": 400, "epochs": 5, "train_time_s": 60.0},
            "machine": {"cpu_count": 2, "torch_threads": 2, "processes": 1, "load_start": [4.1, 3.0, 2.0],
                        "load_end": [5.0, 4.0, 3.0], "cpu_time_s": 120.0, "wall_s": 70.0}}


def test_summary_reads_x100_names_the_sets_and_warns_at_chance():
    text = results.summary(_record(0.4779, score_held=0.55))
    assert "best (step 100): dev acc 47.79  held-out acc 55.00" in text
    assert "[best step picked by held-out acc]" in text
    assert "chance level: dev acc 52.70" in text
    assert "WARNING: at or below chance: dev acc 47.79 (chance 52.70): the run has not learned the task" in text
    assert "load start 4.10, end 5.00" in text and "UNDER LOAD" in text
    assert "WARNING" not in results.summary(_record(0.80))


# --- times and their conditions ----------------------------------------------------------------------------------
def test_loaded_rule_by_hand():
    from dcft import conditions

    idle = {"cpu_count": 2, "load_start": [0.3, 0, 0], "load_end": [2.2, 0, 0], "cpu_time_s": 200.0, "wall_s": 100.0}
    assert conditions.condition(idle) == "idle"  # 2.2 - 200/100 = 0.2 of others' load <= 1
    assert conditions.condition({**idle, "load_start": [1.2, 0, 0]}) == "loaded"  # 1.2 > 0.5 x 2 cores
    assert conditions.condition({**idle, "load_end": [3.1, 0, 0]}) == "loaded"  # 3.1 - 2 = 1.1 > 1
    assert conditions.condition({**idle, "processes": 2, "load_end": [4.1, 0, 0], "cpu_time_s": 200.0}) == "idle"
    assert conditions.condition(None) == conditions.condition({"cpu_count": 2}) == "unknown"


def test_busy_cpu_time_decides_over_a_lagging_load_average(tmp_path):
    """The run just before leaves the 1-minute load average high at the start; the busy CPU seconds of
    /proc/stat over the run say what other work really did."""
    from dcft import conditions

    stat = tmp_path / "stat"
    stat.write_text("cpu  1000 50 250 9000 40 10 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    ticks = os.sysconf("SC_CLK_TCK")
    assert conditions.busy_cpu_seconds(str(stat)) == pytest.approx((1000 + 50 + 250 + 10 + 5 + 0) / ticks)
    assert conditions.busy_cpu_seconds(str(tmp_path / "absent")) is None
    start = {"cpu_count": 2, "torch_threads": 2, "load_avg": [1.54, 0, 0], "cpu_time_s": 10.0, "wall_s": 0.0,
             "busy_cpu_s": 500.0}
    # over 40 s the machine was busy 66 s, 60 of them this run's: other work kept 6 / 40 = 0.15 cores busy
    end = {**start, "load_avg": [1.74, 0, 0], "cpu_time_s": 70.0, "wall_s": 40.0, "busy_cpu_s": 566.0}
    rec = conditions.machine_record(start, end)
    assert rec["other_cores"] == pytest.approx(0.15)
    assert conditions.condition(rec) == "idle"  # the load average alone (1.54 > 1 at the start) says loaded
    assert conditions.condition({k: v for k, v in rec.items() if k != "other_cores"}) == "loaded"
    busy = conditions.machine_record(start, {**end, "busy_cpu_s": 500.0 + 60 + 48})  # others: 48 / 40 = 1.2 > 1
    assert busy["other_cores"] == pytest.approx(1.2) and conditions.condition(busy) == "loaded"


def _write(root: Path, name: str, seconds: float, machine: dict | None, cpu: str, score: float, chance=None):
    d = root / "minilm" / "rte" / name
    d.mkdir(parents=True)
    method = {"name": "lora", "r": 1, "targets": "all"} if name.startswith("lora") else \
        {"name": "dcft", "kernel": 8, "stride": 8, "targets": "all", "rank": 1}
    rec = {"status": "completed", "choices": {"preset": "cpu"},
           "config": {"model": {"name": "minilm"}, "task": {"name": "rte"}, "method": method, "seed": 6,
                      "train": {"lr": 1e-3}},
           "metrics": {"best": {"score": score, "step": 10}, "final": {"score": score}},
           "params": {"method": 100}, "train": {"steps": 10, "train_time_s": seconds},
           "environment": {"cpu": cpu}}
    if machine is not None:
        rec["machine"] = machine
    if chance is not None:
        rec["baseline"] = {"validation/accuracy": chance}
    (d / "result.json").write_text(json.dumps(rec))


IDLE = {"cpu_count": 2, "torch_threads": 2, "load_start": [0.1, 0, 0], "load_end": [2.0, 0, 0], "cpu_time_s": 110.0,
        "wall_s": 60.0}
LOADED = {**IDLE, "load_start": [4.0, 3.0, 2.0]}


def test_results_table_marks_times_under_load_other_hardware_and_scores_at_chance(tmp_path):
    from dcft import conditions

    _write(tmp_path, "dcft-idle", 180.0, IDLE, "Xeon", 0.70, chance=0.527)
    _write(tmp_path, "lora-loaded", 660.0, LOADED, "Xeon", 0.47, chance=0.527)
    df = results.load_tidy(tmp_path)
    table = results.compare(df)
    text = results.format_compare(table)
    rows = {ln.split()[2]: ln for ln in text.splitlines()[2:]}
    assert rows["dcft"].rstrip().endswith("3.00") and rows["lora"].rstrip().endswith("11.00*")
    assert "70.00" in rows["dcft"] and "47.00!" in rows["lora"] and "52.70" in rows["lora"]
    notes = "\n".join(results.compare_notes(table))
    assert conditions.RULE in notes and "! at or below chance: 1 row" in notes
    assert "comparable only between unmarked rows" in notes
    _write(tmp_path, "dcft-old", 200.0, None, "EPYC", 0.71)  # older file: no load; other hardware
    table = results.compare(results.load_tidy(tmp_path))
    text = results.format_compare(table)
    assert " hw" in text.splitlines()[0] and "?" in text
    notes = "\n".join(results.compare_notes(table))
    assert "hw: A = " in notes and "records no machine load" in notes


def test_figure2_labels_a_time_ratio_only_between_idle_runs_on_one_hardware():
    from dcft.report.figures import seeds_text, time_ratio_label

    def r(h, cond="idle", cpu="Xeon"):
        return {"time_h": h, "time_condition": cond, "cpu": cpu, "gpu": None}

    assert time_ratio_label([r(3.0)], [r(2.0)]) == "+50%"
    assert time_ratio_label([r(11.12, "loaded")], [r(3.03)]) is None
    assert time_ratio_label([r(3.0, "unknown")], [r(2.0)]) is None
    assert time_ratio_label([r(3.0)], [r(2.0, cpu="EPYC")]) is None
    assert seeds_text([{"seed": 6}]) == "seed 6 (n = 1)"
    assert seeds_text([{"seed": 8}, {"seed": 6}, {"seed": 7}, {"seed": 6}]) == "seeds 6, 7, 8 (n = 3)"


# --- a quiet run shows it is alive ---------------------------------------------------------------------------------
def test_heartbeat_every_few_seconds_with_rate_and_eta_by_hand():
    from dcft.harness.console import Heartbeat

    now = [100.0]
    out = io.StringIO()
    hb = Heartbeat(total=100, first_step=0, every=5.0, file=out, clock=lambda: now[0], label="squad/lora")
    now[0] = 103.0
    assert not hb.beat(6, 1.5)  # 3 s: too soon
    now[0] = 110.0
    hb.evaluated("dev F1 45.10 (best 45.10 @ 20)")
    assert hb.beat(20, 1.25)
    assert out.getvalue().strip() == ("[squad/lora] step 20/100  loss 1.2500  dev F1 45.10 (best 45.10 @ 20)  "
                                      "2.00 steps/s  ETA 40s")  # 20 steps in 10 s; 80 left at 2/s
    now[0] = 112.0
    assert not hb.beat(24, 1.2) and hb.beat(24, 1.2, force=True)


def test_quiet_run_prints_heartbeat_lines_and_a_bar_shows_x100_with_the_set(glue_dir, tmp_path, capfd):
    run(compose_cfg(TINY + [f"data.glue_dir={glue_dir}"]), tmp_path / "q")
    out = capfd.readouterr().out
    assert re.search(r"\[rte/dcft\] step 3/3  loss \d+\.\d{4}  dev acc \d+\.\d\d \(best \d+\.\d\d @ \d\)", out), out
    run(compose_cfg([a for a in TINY if a != "train.progress=false"] + [f"data.glue_dir={glue_dir}"]),
        tmp_path / "bar")
    err = capfd.readouterr().err
    assert re.search(r"dev acc \d+\.\d\d \(best \d+\.\d\d @ \d\)", err), err[-500:]
    assert not re.search(r"score=0\.\d{4}", err)


# --- adapters -------------------------------------------------------------------------------------------------------
def test_export_is_reachable_after_import_dcft():
    p = subprocess.run([PY, "-c", "import dcft; print(dcft.export.evaluate_run_adapter.__name__)"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "evaluate_run_adapter", p.stderr


def test_evaluate_run_adapter_returns_the_dev_score_of_a_holdout_run(glue_dir, tmp_path):
    from dcft.harness.export import evaluate_run_adapter

    rec = run(compose_cfg(TINY + [f"data.glue_dir={glue_dir}", "data.holdout=0.25", "train.lr=5e-3"]), tmp_path / "h")
    got = evaluate_run_adapter(tmp_path / "h", "best")
    assert got.key == "validation/accuracy" and got.set == "dev"
    assert got.score == pytest.approx(rec["metrics"]["best"]["validation/accuracy"], abs=1e-6)
    assert "holdout/accuracy" in got.metrics


# --- missing data --------------------------------------------------------------------------------------------------
def test_no_glue_dir_offline_is_one_line_before_any_hub_attempt_and_leaves_no_folder(tmp_path):
    env = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    p = _cli(["model=tiny-bert", "task=rte", "preset=none", "logger=none", f"output_root={tmp_path / 'o'}"], env=env,
             timeout=300)
    assert p.returncode == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*"))  # no (failed) run folder
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass data.glue_dir=DIR" in lines[0] and "RTE/train.tsv" in lines[0], p.stderr
    assert "Hub is offline (HF_" in lines[0]  # said before any download attempt, not after one failed


def test_hub_probe_and_cache_check(tmp_path, monkeypatch):
    import datasets

    from dcft.data import glue

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert "unreachable" in glue.hub_offline()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert glue.hub_offline() == "HF_DATASETS_OFFLINE=1"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    assert not glue.in_hub_cache("nyu-mll/glue", "rte")
    (tmp_path / "nyu-mll___glue" / "rte").mkdir(parents=True)
    assert glue.in_hub_cache("nyu-mll/glue", "rte")
    glue.require_hub_or_cache("nyu-mll/glue", "rte", "data.glue_dir", "x")  # cached: no error


# --- the demo --------------------------------------------------------------------------------------------------------
def test_demo_prints_its_expected_time_first_and_the_caveat_last_with_the_tuned_rates():
    p = subprocess.run(["make", "--no-print-directory", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    cmds = [c for c in p.stdout.splitlines() if c.strip()]
    assert cmds[1].startswith("echo \"expected: about") and "idle" in cmds[1]
    assert cmds[-1].startswith("echo \"Caveat: a demonstration") and "cpu-study" in cmds[-1]
    table = (ROOT / "results" / "demo" / "README.md").read_text().split("| method | chosen | why |")[1]
    chosen = dict(re.findall(r"^\| (dcft|lora) \| ([0-9.e-]+) \|", table, flags=re.M))
    assert set(chosen) == {"dcft", "lora"}
    for method in ("dcft", "lora"):
        run_line = next(c for c in cmds if f"method={method}" in c)
        assert float(re.search(r"train\.lr=([0-9.e-]+)", run_line).group(1)) == float(chosen[method])
