"""The layers the package's folders name, and the one import direction between them: the readers of
result files (`dcft.report`) and the measurements (`dcft.measure`) never import the harness's training
side (`TRAINING_SIDE`): reading results needs no training loop, no model, no torch. A study
(`dcft.study`) plans and reports from result files and launches its runs through `run.py`, so it
stays out of the training side too.

Two checks, because each misses what the other catches:
* every import statement of a report or measure module, at any depth, read from its syntax tree: a
  function's lazy `from dcft.harness.train import ...` fails here although importing the module would
  not load it, and no test may ever call that function;
* each report or measure module imported alone in a fresh interpreter: no training-side module is
  loaded (nor torch, for a report module): catches a chain through a module a reader may use, e.g.
  `dcft.harness.identity` importing the training loop at its top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dcft"
# The training side of the harness: training, running one configuration, building models,
# checkpoints, trackers, exporting an adapter (evaluates it), sweeps (launch runs).
TRAINING_SIDE = ("dcft.harness.train", "dcft.harness.experiment", "dcft.harness.models", "dcft.harness.checkpoint",
                 "dcft.harness.tracking", "dcft.harness.export", "dcft.harness.sweep")
# A measurement of a method builds the method's model: `dcft.measure` may use model building, nothing
# else of the training side.
MEASURE_MAY_USE = ("dcft.harness.models",)
# Top-level modules: small helpers every layer may use; they import nothing of the package's layers.
HELPERS = ("conditions", "units", "ladder")


def modules_of(layer: str) -> list[str]:
    return sorted(f"dcft.{layer}.{p.stem}" for p in (PACKAGE / layer).glob("*.py") if p.stem != "__init__")


def imported_names(source: str) -> set[str]:
    """Every module an `import` or `from ... import` statement anywhere in `source` names, with
    `from a import b` giving both `a` and `a.b` (b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def forbidden(names: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned))


def banned_for(module: str) -> tuple[str, ...]:
    return tuple(b for b in TRAINING_SIDE if not (module.startswith("dcft.measure.") and b in MEASURE_MAY_USE))


def test_the_import_check_sees_lazy_and_from_imports():
    """The checker itself, on hand-written sources: a lazy import inside a function, a `from package
    import module`, and an allowed import."""
    src = ("from dcft.harness import identity\n"
           "def f():\n    from dcft.harness.train import fit\n"
           "def g():\n    if True:\n        from dcft.harness import experiment\n")
    assert forbidden(imported_names(src), TRAINING_SIDE) == ["dcft.harness.experiment", "dcft.harness.train",
                                                             "dcft.harness.train.fit"]
    assert forbidden(imported_names("from dcft.harness import identity, config\n"), TRAINING_SIDE) == []


def test_the_layers_have_modules():
    """The layers the rule is about exist and hold modules (an empty glob would pass every check)."""
    assert "dcft.report.tables" in modules_of("report") and "dcft.measure.bench" in modules_of("measure")


@pytest.mark.parametrize("module", modules_of("report") + modules_of("measure") + modules_of("study"))
def test_readers_import_nothing_of_the_training_side(module):
    source = (PACKAGE.parent / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
    assert forbidden(imported_names(source), banned_for(module)) == [], \
        f"{module} imports the harness's training side; readers and measurements stay out of it"


@pytest.mark.parametrize("module", modules_of("report") + modules_of("measure") + modules_of("study"))
def test_importing_a_reader_loads_no_training_code(module):
    banned = banned_for(module) + (("torch",) if module.startswith("dcft.report.") else ())
    code = (f"import sys, {module}\n"
            f"print(' '.join(m for m in sys.modules if any(m == b or m.startswith(b + '.') for b in {banned!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [], f"importing {module} loads {out}"


def test_a_study_plans_without_its_report():
    """One direction inside a study: the report reads the planner's decisions, the planner and the spec
    never import the report (a planner that needs the report to decide would make the two a circle)."""
    for module in ("dcft.study.planner", "dcft.study.spec"):
        source = (PACKAGE.parent / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
        assert forbidden(imported_names(source), ("dcft.study.report",)) == [], module


@pytest.mark.parametrize("helper", HELPERS)
def test_top_level_helpers_import_no_layer(helper):
    names = imported_names((PACKAGE / f"{helper}.py").read_text(encoding="utf-8"))
    assert sorted(n for n in names if n.startswith("dcft")) == []
