"""`scripts/migrate_runs.py` gives a run folder written before identities existed the identity of the
run it was: keys its config lacks take the behaviour before they existed (no held-out slice, plain
shuffling, padding per batch), never today's preset values; a key whose old behaviour is unknown
leaves the run where it is."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from dcft.harness import identity
from test_experiment import write_learnable_rte


@pytest.fixture(scope="module")
def migrate():
    spec = importlib.util.spec_from_file_location("migrate_runs", ROOT / "scripts" / "migrate_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# A run of the CPU preset's command made before `data.holdout`, `data.pad_to_max_length` and
# `train.group_by_length` existed: it selected its best step on dev and shuffled plainly.
KEYS_ADDED_LATER = ("data.holdout", "data.pad_to_max_length", "train.group_by_length", "train.reuse_across_versions",
                    "launch")


def _old_run(root, glue, drop=KEYS_ADDED_LATER, processes=1):
    overrides = ["model=minilm", "preset=cpu", "task=rte", "method=dcft", "kernel=8", f"data.glue_dir={glue}"]
    config = OmegaConf.to_container(compose_cfg(overrides), resolve=True)
    assert config["data"]["holdout"] == 0.1 and config["train"]["group_by_length"] is True  # today's preset
    for key in drop:
        section, _, name = key.partition(".")
        (config[section].pop(name, None) if name else config.pop(section, None))
    run_dir = root / "minilm" / "rte" / "dcft" / "preset=cpu,kernel=8"  # an old, override-named folder
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / "result.json").write_text(json.dumps({
        "status": "completed", "config": config, "choices": {"preset": "cpu", "hp@_global_": "cpu/minilm/rte"},
        "device": "cpu", "processes": processes,
        "environment": {"versions": {"torch": "2.13.0+cpu", "transformers": "5.24.0", "peft": "0.21.2",
                                     "accelerate": "1.16.0"}}}))
    return run_dir, overrides


def test_a_run_made_before_holdout_is_migrated_as_dev_selected_and_plainly_shuffled(migrate, tmp_path):
    glue = write_learnable_rte(tmp_path / "glue")
    root = tmp_path / "runs"
    old_dir, overrides = _old_run(root, glue)
    line = migrate.migrate_one(old_dir / "result.json", root, dry_run=False)
    assert line.startswith("moved"), line
    assert "'data.holdout': 0.0" in line and "'train.group_by_length': False" in line
    (moved,) = root.rglob("result.json")
    rec = json.loads(moved.read_text())
    declared = rec["identity"]["declared"]
    assert declared["data"]["holdout"] == 0.0 and declared["data"]["pad_to_max_length"] is False
    assert "group_by_length" not in declared["train"] and "launch" not in declared  # plain shuffle, 1 CPU process
    assert rec["migrated"]["assumed"] == {"data.holdout": 0.0, "data.pad_to_max_length": False,
                                          "train.group_by_length": False}
    assert rec["identity"]["versions"] == {"torch": "2.13", "transformers": "5.24", "peft": "0.21",
                                           "accelerate": "1.16"}
    assert moved.parent.relative_to(root).as_posix() == identity.run_subdir(declared)
    today = identity.declared_config(OmegaConf.to_container(compose_cfg(overrides), resolve=True))
    assert identity.run_subdir(today) != identity.run_subdir(declared)  # today the command means a held-out run


def test_the_processes_a_run_recorded_are_its_own(migrate, tmp_path):
    glue = write_learnable_rte(tmp_path / "glue")
    old_dir, _ = _old_run(tmp_path / "runs", glue, processes=2)
    line = migrate.migrate_one(old_dir / "result.json", tmp_path / "runs", dry_run=True)
    assert line.startswith("would"), line
    made, _, unknown = migrate.as_run_made(json.loads((old_dir / "result.json").read_text()),
                                           OmegaConf.to_container(compose_cfg(["model=minilm", "preset=cpu"]),
                                                                  resolve=True))
    assert not unknown and identity.declared_config(made)["launch"] == {"processes": 2}


def test_a_run_lacking_a_key_whose_old_behaviour_is_unknown_is_left_where_it_is(migrate, tmp_path):
    glue = write_learnable_rte(tmp_path / "glue")
    old_dir, _ = _old_run(tmp_path / "runs", glue, drop=KEYS_ADDED_LATER + ("train.adam_eps",))
    line = migrate.migrate_one(old_dir / "result.json", tmp_path / "runs", dry_run=False)
    assert line.startswith("left") and "train.adam_eps" in line and "not known" in line
    assert (old_dir / "result.json").is_file()
