"""The hand-kept code revisions of a run's identity, guarded: the code each covers and its fingerprint.

A run's identity carries the revision of the training loop (`dcft.harness.identity.CODE_REVISION`) and of its
method (`Method.revision`), bumped by hand when a change alters what a run computes, so that a
relaunch never reuses a result of older code. A forgotten bump would do exactly that. So
`dcft/harness/revisions.json` records, per revision, its number and a fingerprint of the code it covers, and
`tests/test_revisions.py` fails when that code changes while the number does not, telling the
developer to bump it (the change alters what runs compute) or to record the new fingerprint
deliberately (it does not: a refactor, a message, a speed-up):

    python -m dcft.harness.revisions            # per revision: unchanged, or what changed since the record
    python -m dcft.harness.revisions --record   # record today's code as the code of today's revision numbers

What each revision covers:

* `loop` (`CODE_REVISION`): the functions, classes and module-level constants of `LOOP_MODULES`: the
  loop's arithmetic (`dcft.harness.train`: schedule, clipping, accumulation, evaluation, best step), running one
  configuration (`dcft.harness.experiment`: seeding, build order), checkpoints, model building and target
  resolution (`dcft.harness.models`), the method interface's defaults (`dcft.methods.base`: parameter groups,
  optimizer), data loading and splitting, tasks and metrics.
* each method (`Method.revision`): the module defining its class and its bases, and every
  `dcft.methods` module those use, directly or not (DCFT: its layer, its config and `ops`): their
  functions, classes and constants, i.e. the method's forward, initialisation, parameter groups and
  extra loss; not `dcft.methods.base` (the loop's) and not other methods' classes.

A fingerprint is the SHA-256 of each object's syntax tree (`ast`) with docstrings, import statements
(inside functions too: they bind names, they compute nothing) and the class's `revision = N` line
removed, so comments, docstrings, formatting and where a module lives never count. Objects are keyed by
name, not by file: moving a function between covered modules, or a covered module to another package,
changes nothing; a move or rename out of them shows as removed/added (record again). Recording never
invalidates a committed run (runs carry revision numbers, not fingerprints); only a revision bump does.

Written in-house: no library fingerprints "the code that determines a result" for a harness.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import inspect
import json
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

RECORD = Path(__file__).with_name("revisions.json")
LOOP_MODULES = ("dcft.harness.train", "dcft.harness.experiment", "dcft.harness.checkpoint", "dcft.harness.models", "dcft.methods.base",
                "dcft.data", "dcft.tasks", "dcft.metrics")
METHODS_PACKAGE = "dcft.methods"
RECORD_COMMAND = "python -m dcft.harness.revisions --record"


# ------------------------------------------------------------------------------------------------
# Fingerprints of syntax trees
# ------------------------------------------------------------------------------------------------
def _strip(node: ast.AST) -> ast.AST:
    """`node` without docstrings (in itself and every nested function or class), without import
    statements in any body (a module's new place changes no computation) and without the
    `revision = N` assignment of a class body."""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = sub.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body = body[1:]
            if isinstance(sub, ast.ClassDef):
                body = [s for s in body if not _assigns(s, "revision")]
            sub.body = body or [ast.Pass()]
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(sub, field, None)
            if isinstance(stmts, list) and any(isinstance(s, (ast.Import, ast.ImportFrom)) for s in stmts):
                setattr(sub, field, [s for s in stmts if not isinstance(s, (ast.Import, ast.ImportFrom))] or [ast.Pass()])
    return node


def _assigns(stmt: ast.stmt, name: str) -> bool:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


def _canon(node: Any) -> str:
    """A text of a syntax tree that only its content decides: node types and non-empty fields (so a
    field a newer Python adds empty, e.g. `type_params`, changes nothing); no positions, no contexts."""
    if isinstance(node, ast.AST):
        fields = [f"{f}={_canon(v)}" for f in node._fields if f not in ("ctx", "type_comment")
                  for v in [getattr(node, f, None)] if v is not None and v != []]
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_canon(x) for x in node) + "]"
    return repr(node)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def module_objects(source: str) -> dict[str, str]:
    """`{name: fingerprint}` of a module's functions, classes and constants (imports, docstrings and
    other statements are not code a run computes with)."""
    out: dict[str, str] = {}
    for stmt in ast.parse(source).body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [stmt.name]
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        else:
            continue
        text = _canon(_strip(stmt))
        for name in names:
            if name != "__all__":
                out[name] = _digest(text)
    return out


# ------------------------------------------------------------------------------------------------
# What each revision covers
# ------------------------------------------------------------------------------------------------
def _submodules(name: str) -> list[str]:
    """A module, or a package and all its modules."""
    mod = importlib.import_module(name)
    if not hasattr(mod, "__path__"):
        return [name]
    return [name] + sorted(m.name for m in pkgutil.walk_packages(mod.__path__, prefix=name + "."))


def _method_module(name: str | None) -> bool:
    """A module of one method (not the methods package itself, a method's package `__init__`, or
    the interface `dcft.methods.base`, which the loop's revision covers)."""
    if not name or not name.startswith(METHODS_PACKAGE + ".") or name == f"{METHODS_PACKAGE}.base":
        return False
    return not hasattr(sys.modules.get(name) or importlib.import_module(name), "__path__")


def method_modules(cls: type) -> list[str]:
    """The modules a method's revision covers: those defining its class and its bases, and every
    method module they use (a module, function or class of it in their namespace), transitively."""
    todo = [c.__module__ for c in cls.__mro__ if _method_module(c.__module__)]
    seen: list[str] = []
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        for value in vars(importlib.import_module(name)).values():
            used = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None) \
                if inspect.isclass(value) or inspect.isfunction(value) else None
            if _method_module(used) and used not in seen:
                todo.append(used)
    return sorted(seen)


def _other_methods(cls: type, module: ModuleType) -> set[str]:
    """Names of the classes in `module` that are other methods (a `Method` not among `cls`'s bases)."""
    from dcft.methods.base import Method

    return {n for n, v in vars(module).items()
            if inspect.isclass(v) and issubclass(v, Method) and v.__module__ == module.__name__ and v not in cls.__mro__}


def covered_code(modules: list[str], skip: Mapping[str, set[str]] | None = None,
                 sources: Mapping[str, str] | None = None) -> dict[str, str]:
    """`{name: fingerprint}` of the objects of `modules` (their source from `sources` where given,
    else their file), `skip[module]` names left out. A name defined in several modules gets one
    fingerprint of all its definitions."""
    found: dict[str, list[str]] = {}
    for name in modules:
        source = (sources or {}).get(name)
        if source is None:
            source = inspect.getsource(importlib.import_module(name))
        for obj, fp in module_objects(source).items():
            if obj not in (skip or {}).get(name, set()):
                found.setdefault(obj, []).append(fp)
    return {k: v[0] if len(v) == 1 else _digest(",".join(sorted(v))) for k, v in sorted(found.items())}


def units(sources: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Every hand-kept revision: `{unit: {"revision", "code", "bump"}}`, `bump` saying where the
    number lives. Units: `loop`, and `method <name>` per registered method."""
    from dcft.harness import identity
    from dcft.methods import REGISTRY, method_class

    loop = [m for name in LOOP_MODULES for m in _submodules(name)]
    out = {"loop": {"revision": identity.CODE_REVISION, "code": covered_code(loop, sources=sources),
                    "bump": "CODE_REVISION in dcft/harness/identity.py"}}
    for name in REGISTRY:
        cls = method_class(name)
        mods = method_modules(cls)
        skip = {m: _other_methods(cls, importlib.import_module(m)) for m in mods}
        out[f"method {name}"] = {"revision": cls.revision, "code": covered_code(mods, skip, sources),
                                 "bump": f"`revision = {cls.revision + 1}` in class {cls.__name__} "
                                         f"({inspect.getsourcefile(cls)})"}
    return out


# ------------------------------------------------------------------------------------------------
# Record and check
# ------------------------------------------------------------------------------------------------
def read_record(path: str | Path = RECORD) -> dict[str, Any]:
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def record(path: str | Path = RECORD) -> None:
    """Write today's revision numbers and the fingerprints of the code they cover."""
    data = {k: {"revision": u["revision"], "code": u["code"]} for k, u in units().items()}
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _changes(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    parts = []
    for label, names in (("changed", [k for k in new if k in old and old[k] != new[k]]),
                         ("added", [k for k in new if k not in old]), ("removed", [k for k in old if k not in new])):
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    return "; ".join(parts)


def check(recorded: Mapping[str, Any] | None = None, sources: Mapping[str, str] | None = None) -> list[str]:
    """What stands between the code and its record, one message per revision (empty: all match)."""
    recorded = read_record() if recorded is None else recorded
    problems = []
    for unit, now in units(sources).items():
        was = recorded.get(unit)
        if was is None:
            problems.append(f"{unit}: no fingerprint recorded for revision {now['revision']}; record it: {RECORD_COMMAND}")
            continue
        changes = _changes(was["code"], now["code"])
        if was["revision"] != now["revision"]:
            problems.append(f"{unit}: revision {now['revision']} (recorded: {was['revision']}); record the code of the "
                            f"new revision: {RECORD_COMMAND}")
        elif changes:
            problems.append(
                f"{unit}: the code revision {now['revision']} covers has changed ({changes}). If this changes what a "
                f"run computes (its numbers, not its speed or messages), bump the revision: {now['bump']}, so "
                f"results of the old code are not reused as current. If it does not, record the new fingerprint "
                f"deliberately: {RECORD_COMMAND}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dcft.harness.revisions", description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help=f"write {RECORD.name}: today's revisions and their code")
    args = ap.parse_args(argv)
    if args.record:
        record()
        print(f"recorded {len(units())} revisions in {RECORD}")
        return 0
    problems = check()
    print("\n".join(problems) if problems else f"every revision matches its recorded code ({RECORD})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
