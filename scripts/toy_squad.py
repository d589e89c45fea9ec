"""Write a small synthetic question-answering set in the official SQuAD v1.1 and v2.0 file layout.

For offline end-to-end runs of `task=squad` / `task=squad_v2` (`make cpu-squad`) where the Hub's
SQuAD cannot be downloaded. Each paragraph is a short made-up biography; each question asks for one
of its facts (town, year, occupation, river). Dev questions about the occupation carry two gold
answers ("a baker", "baker"), so the metrics' best-over-gold rule is exercised. In v2.0 every third
question is unanswerable: it asks about a fact the paragraph does not state, or about another person.
Deterministic for a given seed. Not a benchmark: a fixture that a small model can learn in minutes.

    python scripts/toy_squad.py OUT_DIR [--train 400] [--dev 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

NAMES = ["Ada Brann", "Olek Fenn", "Mira Tasse", "Jonah Vell", "Ines Corra", "Tomas Reyl", "Lena Hartt",
         "Piet Oduya", "Sana Morrow", "Karl Eske", "Noor Bailey", "Ivo Stannard", "Rhea Calder", "Umar Deste"]
TOWNS = ["Kellburg", "Arden", "Mossvale", "Tarnwick", "Brookfield", "Fanehold", "Ostrava", "Lindqvist",
         "Corran", "Halden", "Pelham", "Wrexley"]
JOBS = ["baker", "surveyor", "clockmaker", "ferryman", "printer", "glassblower", "teacher", "weaver",
        "cartographer", "miller"]
RIVERS = ["Aune", "Lessing", "Marr", "Tolva", "Ebbe", "Sorrel", "Kessen", "Ullan"]
ABSENT = ["Who taught {name}?", "How many children did {name} have?", "Where did {name} die?"]


def _paragraph(rng: random.Random) -> tuple[str, dict[str, str]]:
    fact = {"name": rng.choice(NAMES), "town": rng.choice(TOWNS), "year": str(rng.randint(1790, 1960)),
            "job": rng.choice(JOBS), "river": rng.choice(RIVERS)}
    first = fact["name"].split()[0]
    context = (f"{fact['name']} was born in {fact['town']} in {fact['year']}. "
               f"{first} later worked as a {fact['job']} near the {fact['river']} river.")
    return context, fact


def _answerable(fact: dict[str, str], rng: random.Random, dev: bool) -> tuple[str, list[str]]:
    kind = rng.choice(["town", "year", "job", "river"])
    question = {"town": "Where was {name} born?", "year": "In which year was {name} born?",
                "job": "What did {name} work as?", "river": "Near which river did {name} work?"}[kind]
    answers = [fact[kind]]
    if kind == "job" and dev:
        answers = [f"a {fact['job']}", fact["job"]]
    return question.format(name=fact["name"]), answers


def _unanswerable(fact: dict[str, str], rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(ABSENT).format(name=fact["name"])
    other = rng.choice([n for n in NAMES if n != fact["name"]])
    return f"Where was {other} born?"


def _split(n: int, version: str, rng: random.Random, prefix: str, dev: bool) -> dict:
    data = []
    for i in range(n):
        context, fact = _paragraph(rng)
        qa: dict = {"id": f"{prefix}{i:05d}"}
        if version == "v2.0" and i % 3 == 2:
            qa.update(question=_unanswerable(fact, rng), answers=[], is_impossible=True)
        else:
            question, texts = _answerable(fact, rng, dev)
            qa.update(question=question, answers=[{"text": t, "answer_start": context.index(t)} for t in texts])
            if version == "v2.0":
                qa["is_impossible"] = False
        data.append({"title": f"{prefix}-{i}", "paragraphs": [{"context": context, "qas": [qa]}]})
    return {"version": version, "data": data}


def write(out: Path, n_train: int = 400, n_dev: int = 100, seed: int = 0) -> list[Path]:
    """Write train/dev files of both versions into `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for version, tag in (("1.1", "v1.1"), ("v2.0", "v2.0")):
        rng = random.Random(f"{seed}-{version}")
        for split, n in (("train", n_train), ("dev", n_dev)):
            path = out / f"{split}-{tag}.json"
            path.write_text(json.dumps(_split(n, version, rng, f"{split}-{tag}-", split == "dev")), encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write train-v1.1.json, dev-v1.1.json, train-v2.0.json, dev-v2.0.json")
    parser.add_argument("--train", type=int, default=400, help="training questions per version")
    parser.add_argument("--dev", type=int, default=100, help="dev questions per version")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    for path in write(args.out, args.train, args.dev, args.seed):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
