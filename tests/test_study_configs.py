"""Every study file (`conf/study/*.yaml`) names only what exists: its tasks are task configs with the
metric the harness reports under that name, its budgets are positive step counts, and every setting
composes through Hydra on every task a group runs it on, exactly as `run.py` composes it, with the
study's shared overrides, the task's budget and the setting's own overrides all applied.

Read with plain YAML and Hydra's compose API, independently of the study planner.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg

STUDIES = sorted((ROOT / "conf" / "study").glob("*.yaml"))
TASKS = {p.stem for p in (ROOT / "conf" / "task").glob("*.yaml")}
TASK_KEYS = {"metric", "budgets", "batch_size", "max_len", "eval_steps", "holdout"}
GROUPS = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()}  # config groups: a choice selects a file


def study(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def pairs(s: dict) -> list[tuple[str, str]]:
    """(setting, task) of every cell a group of the study runs, each once, in file order."""
    out: list[tuple[str, str]] = []
    for group in s["groups"].values():
        out += [(name, task) for name in group["settings"] for task in group["tasks"] if (name, task) not in out]
    return out


def overrides(s: dict, setting: str, task: str, lr: float | None = None) -> list[str]:
    """The run.py command line of one of the study's runs: shared overrides, the task's budget, the setting."""
    t, row = s["tasks"][task], s["settings"][setting]
    over = {**s.get("run", {}), "task": task, "train.max_steps": t["budgets"][-1], "train.batch_size": t["batch_size"],
            "train.max_len": t["max_len"], "train.eval_steps": t["eval_steps"], "data.holdout": t["holdout"],
            "method": row["method"], **(row.get("set") or {})}
    if lr is not None:
        over["train.lr"] = lr
    return [f"{k}={v}" for k, v in over.items()]


def parsed(value):
    """An override's value as the composed config holds it (a string like "[query]" is a list)."""
    return yaml.safe_load(value) if isinstance(value, str) else value


def test_there_are_studies():
    names = {p.stem for p in STUDIES}
    assert {"cpu-minilm", "table1-deberta-v3-base", "table4-6-ablations", "table3-squad"} <= names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_tasks_exist_with_the_harness_metric_and_positive_budgets(path):
    from dcft.data.glue import GLUE_TASKS
    from dcft.metrics.squad import squad_v1_scores, squad_v2_scores

    s = study(path)
    assert s["name"] == path.stem
    # what each SQuAD version's scorer reports, on one question answered right
    gold = [{"id": "q", "answers": {"text": ["Paris"], "answer_start": [0]}}]
    squad_names = {"squad": set(squad_v1_scores({"q": "Paris"}, gold)),
                   "squad_v2": set(squad_v2_scores({"q": "Paris"}, gold))}
    for task, t in s["tasks"].items():
        assert task in TASKS, f"{path.name}: task {task} has no conf/task/{task}.yaml"
        assert set(t) == TASK_KEYS, f"{path.name}: tasks.{task} keys {sorted(t)}"
        if task in GLUE_TASKS:
            assert t["metric"] == GLUE_TASKS[task].main_metric, (task, t["metric"])
        else:
            assert t["metric"] in squad_names[task], (task, t["metric"], squad_names[task])
        budgets = t["budgets"]
        assert budgets and all(type(b) is int and b > 0 for b in budgets), (task, budgets)
        assert budgets == sorted(set(budgets)), (task, budgets)
        for key in ("batch_size", "max_len", "eval_steps"):
            assert type(t[key]) is int and t[key] > 0, (task, key, t[key])
        assert 0 <= t["holdout"] < 1, (task, t["holdout"])


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_groups_and_claims_name_the_study_s_own_settings_and_tasks(path):
    s = study(path)
    for name, g in s["groups"].items():
        assert set(g["settings"]) <= set(s["settings"]), name
        assert set(g["tasks"]) <= set(s["tasks"]), name
    ran = set(pairs(s))
    for c in s.get("claims", []):
        for task in c["tasks"]:
            assert all((x, task) in ran for x in c["settings"]), (c["name"], task)
            if c["kind"] == "as_good_as":
                assert s["margins"][task] > 0, (c["name"], task)


def covering(s: dict) -> list[tuple[str, str]]:
    """Cells that compose every setting once and every task once: each setting on the first task a group
    runs it on, each task with the first setting a group runs on it (tests/test_config.py composes every
    model x task x method)."""
    cells = pairs(s)
    first_task = {x: t for x, t in reversed(cells)}
    first_setting = {t: x for x, t in reversed(cells)}
    return sorted({*first_task.items(), *((x, t) for t, x in first_setting.items())})


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_setting_and_task_composes(path):
    """What run.py would run, composed: an unknown key, method, task or preset value fails here."""
    s = study(path)
    for setting, task in covering(s):
        over = overrides(s, setting, task)
        cfg = compose_cfg(over)
        OmegaConf.resolve(cfg)
        t, row = s["tasks"][task], s["settings"][setting]
        assert cfg.task.name == task and cfg.method.name == row["method"], over
        assert (cfg.train.max_steps, cfg.train.batch_size, cfg.train.max_len, cfg.train.eval_steps) == \
            (t["budgets"][-1], t["batch_size"], t["max_len"], t["eval_steps"]), over
        assert cfg.data.holdout == t["holdout"], over
        for key, value in (row.get("set") or {}).items():
            assert OmegaConf.select(cfg, key) == parsed(value), (over, key)
        assert cfg.model.name == s["run"]["model"], over
        for key, value in s["run"].items():
            if key not in GROUPS:
                assert OmegaConf.select(cfg, key) == parsed(value), (over, key)


def test_the_deberta_studies_share_their_dcft_k8_and_full_runs():
    """The Table 1 and Tables 4-6 studies write to one folder and declare their common cells alike, so
    the runs of one are the other's (one run folder per configuration, dcft.harness.identity)."""
    from dcft.harness.identity import declared_config, run_subdir

    t1, abl = (study(ROOT / "conf" / "study" / f"{n}.yaml") for n in ("table1-deberta-v3-base", "table4-6-ablations"))
    assert t1["output_root"] == abl["output_root"]
    for setting, task in (("dcft8", "cola"), ("full", "rte")):
        dirs = {run_subdir(declared_config(OmegaConf.to_container(compose_cfg(overrides(s, setting, task, 1e-3)),
                                                                   resolve=True)))
                for s in (t1, abl)}
        assert len(dirs) == 1, dirs
