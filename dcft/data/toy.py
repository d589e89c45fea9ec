"""A small learnable GLUE task written on the fly: end-to-end runs without any download (the tests,
and the GPU check's data-parallel comparison)."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = "the a cat dog sun moon tree river stone cloud bird fish road house hill".split()


def write_learnable_rte(root: str | Path, n_train: int = 192, n_dev: int = 64, seed: int = 0) -> Path:
    """An RTE-format folder (`<root>/RTE/{train,dev}.tsv`) whose label is decided by sentence2 (all
    "yes" -> entailment, all "no" -> not_entailment); sentence1 is random words. Returns `root`."""
    root = Path(root)
    rng = random.Random(seed)
    d = root / "RTE"
    d.mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            ent = rng.random() < 0.5
            s1 = " ".join(rng.choice(WORDS) for _ in range(6))
            s2 = " ".join(["yes" if ent else "no"] * rng.randint(3, 6))
            lines.append(f"{i}\t{s1}\t{s2}\t{'entailment' if ent else 'not_entailment'}")
        (d / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
