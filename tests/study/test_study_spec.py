"""A study file's mistakes are named before anything runs: the key, the value and what is valid."""

from __future__ import annotations

import copy

import pytest

from study_fixtures import STUDY
from dcft.study.spec import StudyError, load, parse


def raw(**changes):
    out = copy.deepcopy({**STUDY, "output_root": "runs", "report_dir": "out"})
    out.update(changes)
    return out


def test_the_fixture_and_the_cpu_study_parse():
    s = parse(raw())
    assert s.core("sst2") == ["lora", "dcft8"] and s.tuned_on("lora_qv", "sst2") and not s.tuned_on("dcft4", "sst2")
    cpu = load("conf/study/cpu-minilm.yaml")
    assert cpu.tasks["cola"].budgets == (600, 1200) and cpu.tasks["cola"].steps == 1200
    assert cpu.groups["kernel"].rate.rule == "of" and cpu.groups["kernel"].rate.setting == "dcft8"


def _groups(**g):
    out = copy.deepcopy(STUDY["groups"])
    out.update(g)
    return out


@pytest.mark.parametrize("changes, words", [
    ({"groups": _groups(kernel={"settings": ["dcft5"], "tasks": ["sst2"], "rate": "tuned"})},
     ["groups.kernel.settings", "'dcft5'", "lora, dcft8, dcft4, lora_qv"]),
    ({"groups": _groups(kernel={"settings": ["dcft4"], "tasks": ["sst2"], "rate": {"of": "dcft4"}})},
     ["groups.kernel.rate.of", "'dcft4'", "not tuned on sst2"]),
    ({"groups": _groups(kernel={"settings": ["dcft4"], "tasks": ["sst2"], "rate": "fixed"})},
     ["groups.kernel.rate", "'fixed'", "tuned, {around: <setting>} or {of: <setting>}"]),
    ({"claims": [{"name": "c", "kind": "worse", "settings": ["dcft8", "lora"], "tasks": ["sst2"]}]},
     ["claims[0] (c).kind", "'worse'", "better, as_good_as, ordering"]),
    ({"claims": [{"name": "c", "kind": "better", "settings": ["dcft8", "nope"], "tasks": ["sst2"]}]},
     ["claims[0] (c).settings", "'nope'"]),
    ({"tasks": {**STUDY["tasks"], "cola": {**STUDY["tasks"]["sst2"], "metric": "matthews_correlation"}},
      "claims": [{"name": "c", "kind": "better", "settings": ["dcft8", "lora"], "tasks": ["cola"]}]},
     ["claims[0] (c).tasks", "'cola'", "setting dcft8 runs on cola in none of the study's groups"]),
    ({"margins": {}}, ["claims[0] (k8_vs_lora).tasks", "'sst2'", "as_good_as needs an equivalence margin"]),
    ({"claims": [{"name": "c", "kind": "better", "settings": ["dcft8", "lora", "dcft4"], "tasks": ["sst2"]}]},
     ["claims[0] (c).settings", "better takes two settings"]),
    ({"tuning": {**STUDY["tuning"], "seed": 9}}, ["tuning.seed", "9", "one of the seeds (6, 7, 8)"]),
    ({"budget_check": {**STUDY["budget_check"], "rule": "looks_fine"}},
     ["budget_check.rule", "'looks_fine'", "interval_contains_zero"]),
    ({"budget_check": {**STUDY["budget_check"], "also": ["dcft4"]}}, ["budget_check.also", "'dcft4'", "tuned"]),
    ({"tasks": {"sst2": {**STUDY["tasks"]["sst2"], "budgets": [1000, 500]}}},
     ["tasks.sst2.budgets", "[1000, 500]", "increasing"]),
    ({"tasks": {"sst2": {**STUDY["tasks"]["sst2"], "holdout": 0.0}}},
     ["tasks.sst2.holdout", "0.0", "select_on is holdout", "above 0"]),
    ({"seed": 3}, ["seed = 3", "unknown key", "valid: name, title"]),
    ({"report": {"tabel1": {}}}, ["report.tabel1", "unknown report block"]),
    ({"report": {"summary": {"claim": "nope"}}}, ["report.summary.claim", "'nope'", "a claim of two settings: k8_vs_lora"]),
    ({"groups": _groups(core={**STUDY["groups"]["core"], "skip": {"sst2": ["dcft4"]}})},
     ["groups.core.skip.sst2", "['dcft4']", "the group's settings: lora, dcft8"]),
    ({"groups": _groups(core={**STUDY["groups"]["core"], "skip": {"cola": ["lora"]}})},
     ["groups.core.skip.cola", "cola is not one of the group's tasks: sst2"]),
    ({"budget_check": {**STUDY["budget_check"], "last_short": "go"}}, ["budget_check.last_short", "'go'", "stop, report"]),
    ({"budget_check": {**STUDY["budget_check"], "also_tasks": ["qnli"]}},
     ["budget_check.also_tasks", "'qnli'", "not one of the study's tasks: sst2"]),
    ({"report": {"retuned": {"groups": ["kernel"]}}},  # at its parent's rate only: no grid of its own
     ["report.retuned.groups", "'kernel'", "a parent and its own grid"]),
    ({"settings": {**STUDY["settings"], "x": {"title": "X", "method": "lora", "set": {"train.lr": 0.1}}}},
     ["settings.x.set", "may not set method, train.lr or seed"]),
])
def test_bad_study_files_are_named(changes, words):
    with pytest.raises(StudyError) as e:
        parse(raw(**changes))
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_missing_study_file_lists_the_studies():
    with pytest.raises(StudyError, match="cpu-minilm"):
        load("no-such-study")


def test_launch_settings_are_hydra_keys_only():
    """Launch-time overrides reach every sweep; anything but hydra.* would change the runs behind the
    planner's back (it would never find them finished), so it is refused, naming the key."""
    from dcft.study.__main__ import check_launcher_args, command

    assert check_launcher_args(["hydra.launcher.partition=gpu"]) == ("hydra.launcher.partition=gpu",)
    with pytest.raises(StudyError, match=r"train\.lr=1e-3.*hydra\.\*"):
        check_launcher_args(["hydra.launcher.timeout_min=60", "train.lr=1e-3"])
    sweep = {"args": ["task=rte", "train.lr=1e-3", "seed=6"]}
    assert command(sweep, launcher="slurm", launcher_args=("hydra.launcher.partition=gpu",))[2:] == [
        "-m", "task=rte", "train.lr=1e-3", "seed=6", "hydra.launcher.partition=gpu", "hydra/launcher=slurm"]


def test_a_chunk_of_a_study_is_named_tasks_and_groups():
    """`--tasks` / `--groups` keep the planned runs on those tasks and in those groups; a name the study
    does not have is refused with the valid ones, instead of silently planning nothing."""
    from dcft.study.__main__ import narrow

    s = parse(raw())
    runs = [{"task": "sst2", "group": "core"}, {"task": "sst2", "group": "frontier"},
            {"task": "sst2", "group": "budget_check.also"}]
    assert narrow(s, runs) == runs
    assert narrow(s, runs, groups="frontier,budget_check.also") == runs[1:]
    assert narrow(s, runs, tasks="sst2", groups="core") == runs[:1]
    with pytest.raises(StudyError, match=r"--tasks rte: rte not in the study; valid: sst2"):
        narrow(s, runs, tasks="rte")
    with pytest.raises(StudyError, match=r"--groups cor: cor .*valid: core, kernel, frontier, budget_check.also"):
        narrow(s, runs, groups="cor")
