"""scripts/toy_squad.py writes official-format SQuAD files that our loader reads, with consistent
answer offsets, v2.0's unanswerable third, and the same files for the same seed."""

from __future__ import annotations

import importlib.util

from conftest import ROOT
from dcft.data.squad import load_squad

_spec = importlib.util.spec_from_file_location("toy_squad", ROOT / "scripts" / "toy_squad.py")
toy_squad = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy_squad)


def test_files_load_with_consistent_offsets(tmp_path):
    toy_squad.write(tmp_path, n_train=30, n_dev=12, seed=1)
    for version in ("v1", "v2"):
        ds = load_squad(version, tmp_path)
        assert (len(ds["train"]), len(ds["validation"])) == (30, 12)
        for ex in list(ds["train"]) + list(ds["validation"]):
            for text, start in zip(ex["answers"]["text"], ex["answers"]["answer_start"]):
                assert ex["context"][start:start + len(text)] == text
        unanswerable = [ex for ex in ds["validation"] if not ex["answers"]["text"]]
        assert len(unanswerable) == (4 if version == "v2" else 0)
    multi = [ex for ex in load_squad("v1", tmp_path)["validation"] if len(ex["answers"]["text"]) == 2]
    assert multi and all(ex["answers"]["text"][0] == "a " + ex["answers"]["text"][1] for ex in multi)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a, b, c = (toy_squad.write(tmp_path / d, 20, 8, seed) for d, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]
