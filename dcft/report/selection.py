"""Which runs fill a table cell: one selection protocol for `dcft.report.tables`, `dcft.report.figures` and the
studies (`dcft.study.planner`, `dcft.study.report`).

A cell compares like with like. Its candidates are the completed runs that match its row and column.

1. **Conditions.** Two runs share a *condition* when their whole identity is equal except for the
   seed and the tuning axes (`TUNING_AXES`: the learning rate; a caller may declare others). The
   identity (`identity_facts`) is the run's declared configuration, the fingerprints of its data and
   model files and its code revisions, with whatever else `dcft.harness.identity` stores in a result file's
   `identity`, and what the result file records beside it: the number of processes, the device kind
   (cpu, cuda, ...) and the precision. Runs under different conditions (another
   budget, initialisation, process count, precision, device kind, held-out protocol, data, code)
   never compete: one condition fills the cell (`pick_condition`, which never looks at a score) and
   every other one is left out with the keys that differ.
2. **Settings.** Within the condition, a *setting* is one value of the tuning axes; its runs are its
   seeds.
3. **The choice is made on one seed.** Every setting is compared on its run at the tuning seed
   (`TUNING_SEED`), by the selection score `metrics.best.score`: the held-out slice's score with
   `data.holdout > 0`, dev otherwise (paper Appendix E: "we tune the learning rate and pick the best
   learning rate for every method"). A setting without a run at the tuning seed cannot be compared
   on the same footing and is left out (a lone setting needs no comparison and fills the cell).
   Ties go to the smaller tuning value (the smaller learning rate). The number of seeds a setting
   has plays no part: the chosen setting reports all its seeds, and one with fewer seeds than the
   table asks for is marked (`Choice.missing`), never preferred.
4. **Best step.** A run's selection score is its best evaluation; where several evaluations tie at
   that score, the earliest counts (`BEST_STEP_RULE`): the training loop (`dcft.harness.train`) keeps the
   first best and replaces it only with a strictly higher score. `best_entry` applies either rule to a
   run's evaluation history, so a report can measure how much the rule matters.

Written in-house: which runs a table may compare is this project's protocol, not a library feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from dcft.harness.identity import ABSENT, canonical, flatten

TUNING_AXES = ("declared.train.lr",)  # identity keys a cell's candidates may differ in (what a setting is tuned over)
TUNING_SEED = 6  # the seed every candidate is compared on: conf/config.yaml's default seed, the authors' scripts'
SEED_KEY = "declared.seed"
METHOD_PREFIX = "declared.method."  # a method's own settings: no other row of a table has them
BEST_STEP_RULES = ("earliest", "latest")
BEST_STEP_RULE = "earliest"  # among evaluations tied at the best selection score: the first (what dcft.harness.train keeps)


# ---- a run's identity as flat facts ------------------------------------------------------------------
def _value(rec: dict[str, Any], key: str) -> Any:
    v = rec.get(key)
    return None if isinstance(v, float) and math.isnan(v) else v


def _nested(rec: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    """A nested dict back from the flat `prefix.a.b` keys of a `dcft.report.results.load_all` record (None if absent)."""
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if k.startswith(prefix + ".") and not (isinstance(v, float) and math.isnan(v)):
            node = out
            *parents, last = k[len(prefix) + 1:].split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = v
    return out or None


def declared_of(rec: dict[str, Any]) -> dict[str, Any]:
    """A flat record's declared configuration (`dcft.harness.identity`): stored in newer result files, computed
    from the stored resolved config for files written before run identities existed."""
    from dcft.harness.identity import declared_config

    stored = _nested(rec, "identity.declared")
    return stored if stored is not None else declared_config(_nested(rec, "config") or {})


def identity_facts(rec: dict[str, Any]) -> dict[str, Any]:
    """The whole identity of a run, as flat `dotted.key -> value` facts, from a flat result record (one
    row of `dcft.report.results.load_all`): `declared.*`, every other part of the stored identity (`inputs.*`,
    `code.*`, ...; its `hash` follows from `declared`), and `run.processes`, `run.device_kind` and
    `run.precision`."""
    identity = _nested(rec, "identity") or {}
    identity.pop("hash", None)
    identity["declared"] = declared_of(rec)
    device = _value(rec, "device")
    run = {"processes": _value(rec, "processes"), "device_kind": str(device).split(":")[0] if device else None,
           "precision": _value(rec, "precision")}
    return flatten({**identity, "run": run})


def condition_key(facts: dict[str, Any], axes: Iterable[str] = TUNING_AXES) -> str:
    """What two runs must share to compete in one cell: every fact but the seed and the tuning axes."""
    skip = {SEED_KEY, *axes}
    return canonical({k: v for k, v in facts.items() if k not in skip})


def differing_keys(a: dict[str, Any], b: dict[str, Any], skip: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """`(key, a's value, b's value)` for every fact where two runs differ, keys in `skip` aside."""
    skip = set(skip)
    return [(k, a.get(k, ABSENT), b.get(k, ABSENT)) for k in sorted(set(a) | set(b))
            if k not in skip and a.get(k, ABSENT) != b.get(k, ABSENT)]


def describe_differences(diffs: list[tuple[str, Any, Any]], limit: int = 3) -> str:
    """`train.max_steps 2400 vs 1200, ...` (the `declared.` prefix dropped)."""
    parts = [f"{k.removeprefix('declared.')} {a} vs {b}" for k, a, b in diffs]
    return ", ".join(parts[:limit]) + (f" and {len(parts) - limit} more" if len(parts) > limit else "")


# ---- the best step ------------------------------------------------------------------------------------
def best_entry(history: list[dict[str, Any]], rule: str = BEST_STEP_RULE, key: str = "score") -> dict[str, Any] | None:
    """The evaluation of `history` with the highest `key` (the selection score); among tied maxima the
    earliest (`rule="earliest"`, what the training loop records as `metrics.best`) or the latest."""
    if rule not in BEST_STEP_RULES:
        raise ValueError(f"best-step rule {rule!r}: valid are {', '.join(BEST_STEP_RULES)}")
    evals = [h for h in history if isinstance(h.get(key), (int, float)) and h[key] == h[key]]
    if not evals:
        return None
    top = max(h[key] for h in evals)
    tied = [h for h in evals if h[key] == top]
    return tied[0] if rule == "earliest" else tied[-1]


def tied_steps(history: list[dict[str, Any]], key: str = "score") -> list[int]:
    """The steps of every evaluation at the run's best selection score (more than one: a tie)."""
    first = best_entry(history, "earliest", key)
    return [] if first is None else [int(h["step"]) for h in history if h.get(key) == first[key]]


def at_best_step(run: dict[str, Any], rule: str) -> dict[str, Any]:
    """A normalised run (`dcft.report.tables.normalise`: `best`, `selection_score`, `history`) with its best
    evaluation taken again from its history under `rule`; the run itself when it has no history."""
    entry = best_entry(run.get("history") or [], rule)
    if entry is None:
        return run
    best = {k: v for k, v in entry.items() if "/" in k and isinstance(v, (int, float))}
    return {**run, "best": best, "selection_score": entry["score"], "best_step": int(entry["step"])}


# ---- the choice -----------------------------------------------------------------------------------------
@dataclass
class LeftOut:
    """Runs a cell does not use, with the reason."""

    runs: list[dict[str, Any]]
    reason: str


@dataclass
class Choice:
    """What fills one cell: `runs` (every seed of the chosen setting; empty when nothing can fill it,
    `empty` says why), the chosen tuning `values`, each compared setting's score at the tuning seed
    (`scores`, tuning values -> score, the chosen condition's), the asked seeds the chosen setting
    lacks (`missing`), how the condition was picked (`condition_note`, when there were several), and
    every run left out with the reason (`left_out`)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    values: tuple = ()
    axes: tuple[str, ...] = TUNING_AXES
    scores: dict[tuple, float] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    condition_note: str = ""
    left_out: list[LeftOut] = field(default_factory=list)
    empty: str = ""

    @property
    def contested(self) -> bool:
        """Whether anything was passed over (another rate, another condition)."""
        return bool(self.left_out)


def _sort_value(v: Any) -> tuple:
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))


def pick_condition(conditions: dict[str, list[dict[str, Any]]], context: list[tuple[str, dict[str, Any]]],
                   axes: Iterable[str] = TUNING_AXES) -> tuple[str, str]:
    """The condition that fills a cell when its candidates ran under several, and how it was picked
    (a sentence). Never a score: on the keys where the conditions differ outside the method's own
    settings, the condition whose values the most rows of the column have runs at (`context`: (row, run)
    of every run of the column); then the one at which the most rows ran several seeds (the rows a study
    reported there); then the most runs of the column at those values; then the most runs of its own;
    then the newest run."""
    skip = {SEED_KEY, *axes}
    reps = {k: runs[0]["facts"] for k, runs in conditions.items()}
    keys = sorted({k for a in reps.values() for b in reps.values() for k, _, _ in differing_keys(a, b, skip)})
    shared = [k for k in keys if not k.startswith(METHOD_PREFIX)]

    def agrees(run: dict[str, Any], rep: dict[str, Any]) -> bool:
        return all(run["facts"].get(k, ABSENT) == rep.get(k, ABSENT) for k in shared)

    rank = {}
    for k, runs in conditions.items():
        ctx = [(row, r["seed"]) for row, r in context if agrees(r, reps[k])]
        seeded = {row for row, _ in ctx if len({sd for rw, sd in ctx if rw == row}) > 1}
        rank[k] = (len({row for row, _ in ctx}), len(seeded), len(ctx), len(runs),
                   max(str(r.get("finished_at") or "") for r in runs))
    order = sorted(conditions, key=lambda k: rank[k], reverse=True)

    def what(k: str) -> str:
        return ", ".join(f"{x.removeprefix('declared.')} {reps[k].get(x, ABSENT)}" for x in shared) or \
            f"{len(conditions[k])} runs of its own"

    def counts(k: str) -> str:
        return f"{rank[k][0]} rows, {rank[k][1]} with several seeds, {rank[k][2]} runs"

    note = (f"{len(conditions)} conditions; kept {what(order[0])} ({counts(order[0])}; next: {what(order[1])}, "
            f"{counts(order[1])})")
    return order[0], note


def choose(runs: list[dict[str, Any]], *, axes: Iterable[str] = TUNING_AXES, tuning_seed: int = TUNING_SEED,
           seeds: Iterable[int] | None = None, context: list[tuple[str, dict[str, Any]]] | None = None) -> Choice:
    """The runs that fill one cell (see the module docstring). `runs`: the cell's candidates, normalised
    records with `facts` (`identity_facts`), `seed`, `selection_score`, `run` (folder) and `finished_at`,
    one per identity (duplicates removed). `seeds`: the seeds the table asks for (default: the tuning
    seed). `context`: (row, run) of every run of the table's column, for `pick_condition`."""
    axes = tuple(axes)
    asked = sorted(set(seeds if seeds is not None else (tuning_seed,)))
    out = Choice(axes=axes)
    if not runs:
        return out
    conditions: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        conditions.setdefault(condition_key(r["facts"], axes), []).append(r)
    kept = next(iter(conditions))
    if len(conditions) > 1:
        kept, out.condition_note = pick_condition(conditions, context or [("", r) for r in runs], axes)
        rep = conditions[kept][0]["facts"]
        for k, group in conditions.items():
            if k != kept:
                diff = describe_differences(differing_keys(group[0]["facts"], rep, {SEED_KEY, *axes}))
                out.left_out.append(LeftOut(group, f"another condition: {diff} (the cell's)"))
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for r in conditions[kept]:
        settings.setdefault(tuple(r["facts"].get(a) for a in axes), []).append(r)

    def at_seed(group: list[dict[str, Any]]) -> dict[str, Any] | None:
        return next((r for r in group if r["seed"] == tuning_seed and r["selection_score"] is not None), None)

    compared = {v: at_seed(g)["selection_score"] for v, g in settings.items() if at_seed(g) is not None}
    out.scores = dict(compared)
    if len(settings) == 1:
        (chosen,) = settings
    elif compared:
        top = max(compared.values())
        chosen = min((v for v, s in compared.items() if s == top), key=lambda v: tuple(map(_sort_value, v)))
    else:
        out.empty = (f"no run at the tuning seed {tuning_seed} to compare its {len(settings)} settings on "
                     f"(their seeds: {', '.join(map(str, sorted({r['seed'] for r in conditions[kept]})))})")
        out.left_out.append(LeftOut(conditions[kept], out.empty))
        return out
    out.values, out.runs = chosen, sorted(settings[chosen], key=lambda r: (r["seed"], r["run"]))
    axis_names = "/".join(a.removeprefix("declared.") for a in axes)
    for v, group in sorted(settings.items(), key=lambda kv: tuple(map(_sort_value, kv[0]))):
        if v == chosen:
            continue
        if v not in compared:
            why = f"no run at the tuning seed {tuning_seed}: not compared"
        elif compared[v] == compared[chosen]:
            why = f"tied at the tuning seed ({compared[v]:.4f}): the smaller {axis_names} is kept"
        else:
            why = f"score {compared[v]:.4f} < {compared[chosen]:.4f} at the tuning seed {tuning_seed}"
        shown = ", ".join(f"{a.removeprefix('declared.')} {x} vs {c}" for a, x, c in zip(axes, v, chosen))
        out.left_out.append(LeftOut(group, f"{shown}: {why}"))
    out.missing = [s for s in asked if s not in {r["seed"] for r in out.runs}]
    return out


def _fmt_values(values: tuple) -> str:
    return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def describe(choice: Choice, tuning_seed: int = TUNING_SEED) -> str:
    """How a cell was picked and what it left out, in one sentence (a table's footnote)."""
    axis = "/".join(a.removeprefix("declared.").removeprefix("train.") for a in choice.axes)
    if choice.empty:
        parts = [f"empty: {choice.empty}"]
    elif len(choice.scores) > 1:
        grid = ", ".join(f"{_fmt_values(v)}: {s:.4f}" for v, s in
                         sorted(choice.scores.items(), key=lambda kv: tuple(map(_sort_value, kv[0]))))
        tied = sum(1 for v in choice.scores.values() if v == choice.scores.get(choice.values))
        parts = [f"{axis} {_fmt_values(choice.values)}, the best of {len(choice.scores)} at seed {tuning_seed} ({grid})"
                 + (f", tied with {tied - 1} other{'s' if tied > 2 else ''}: the smaller kept" if tied > 1 else "")]
    elif choice.values in choice.scores:
        parts = [f"{axis} {_fmt_values(choice.values)}, the only one compared at seed {tuning_seed}"]
    else:
        parts = [f"{axis} {_fmt_values(choice.values)}, the only one (no run at seed {tuning_seed}: nothing to compare)"]
    for lo in choice.left_out:
        if lo.reason.startswith("another condition") or lo.reason == choice.empty:
            parts.append(f"left out {len(lo.runs)} run{'s' if len(lo.runs) > 1 else ''}: {lo.reason}")
        elif "not compared" in lo.reason:
            parts.append(f"not compared {len(lo.runs)} run{'s' if len(lo.runs) > 1 else ''} ({lo.reason})")
    if choice.condition_note:
        parts.append(choice.condition_note)
    return "; ".join(parts)
