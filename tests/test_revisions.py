"""The hand-kept code revisions (`dcft.harness.identity.CODE_REVISION`, each `Method.revision`) against the
recorded fingerprints of the code they cover (`dcft/harness/revisions.json`, `dcft.harness.revisions`).

`test_recorded_revisions_match_the_code` is the guard: it fails when covered code changed while its
revision did not, and says what to do. The other tests show which changes it catches (a one-line
change to DCFT's forward, to the loop's clipping) and which it must not (comments, docstrings,
formatting, a function moved between covered files), on edited copies of the real sources.
"""

from __future__ import annotations

import inspect

import pytest

from dcft.harness import revisions as R
from dcft.methods.dcft import layer, ops

OPS, LAYER = "dcft.methods.dcft.ops", "dcft.methods.dcft.layer"


def _edited(module, old: str, new: str) -> str:
    source = inspect.getsource(module)
    assert source.count(old) == 1, f"{old!r} is not once in {module.__name__}"
    return source.replace(old, new)


def test_recorded_revisions_match_the_code():
    problems = R.check()
    assert not problems, "\n".join(problems)


def test_every_revision_is_recorded_and_covers_its_code():
    recorded = R.read_record()
    assert set(recorded) == {"loop"} | {f"method {m}" for m in __import__("dcft.methods").methods.REGISTRY}
    dcft_code = recorded["method dcft"]["code"]
    assert {"add_update", "delta", "factors", "initialise", "DCFTLinear", "DCFT", "Config"} <= set(dcft_code)
    assert "Method" not in dcft_code and "LoRA" not in recorded["method adalora"]["code"]  # others' classes
    assert {"LoRA", "LoRAFA"} <= set(recorded["method lorafa"]["code"])  # LoRA-FA is a LoRA: its base is its code
    assert {"fit", "make_loaders", "Method", "split_holdout"} <= set(recorded["loop"]["code"])


def test_a_one_line_change_to_dcft_forward_without_a_bump_fails_with_what_to_do():
    sources = {OPS: _edited(ops, "    x = x.to(A.dtype)\n", "    x = x.to(A.dtype)\n    scaling = 0.0\n")}
    problems = R.check(sources=sources)
    assert len(problems) == 1
    msg = problems[0]
    assert msg.startswith("method dcft: the code revision 1 covers has changed (changed: add_update)")
    assert "bump the revision: `revision = 2` in class DCFT" in msg
    assert R.RECORD_COMMAND in msg


def test_a_change_to_the_loop_names_the_loop_revision():
    from dcft.harness import train

    sources = {"dcft.harness.train": _edited(train, "accelerator.clip_grad_norm_(trainable, tcfg.max_grad_norm)",
                                     "accelerator.clip_grad_norm_(trainable, 2 * tcfg.max_grad_norm)")}
    (msg,) = R.check(sources=sources)
    assert msg.startswith("loop: the code revision 1 covers has changed (changed: fit)")
    assert "CODE_REVISION in dcft/harness/identity.py" in msg


def test_comments_docstrings_formatting_and_moves_change_no_fingerprint():
    source = inspect.getsource(ops)
    noise = source.replace('    x = x.to(A.dtype)\n', '    # cast first\n    x = x.to(\n        A.dtype)\n')
    noise = noise.replace('"""`out + scaling * (x Delta)`', '"""Reworded: `out + scaling * (x Delta)`')
    assert noise != source
    assert R.check(sources={OPS: noise}) == []
    start = source.index("def full_size(")
    end = source.index("def subspace(")
    moved = {OPS: source[:start] + source[end:], LAYER: inspect.getsource(layer) + "\n\n" + source[start:end]}
    assert R.check(sources=moved) == []


def test_a_bumped_revision_asks_for_its_code_to_be_recorded(monkeypatch):
    from dcft.methods.dcft.method import DCFT

    monkeypatch.setattr(DCFT, "revision", 2)
    (msg,) = R.check()
    assert msg.startswith("method dcft: revision 2 (recorded: 1)") and R.RECORD_COMMAND in msg


@pytest.mark.parametrize("body", ["return a + b", "return b + a"])
def test_fingerprints_are_of_the_code_not_of_its_text(body):
    base = R.module_objects('def f(a, b):\n    """Add."""\n    return a + b\n')
    other = R.module_objects(f"def f(a, b):  # note\n    {body}\n")
    assert (base == other) == (body == "return a + b")


@pytest.mark.parametrize("body", ["return fit(x)", "return fit(x) + 1"])
def test_a_module_moved_to_another_package_keeps_its_fingerprints(body):
    """Imports bind names and compute nothing: a function whose imports (in its body, in a branch)
    name a module's new place has the fingerprint it had; a change of what it computes does not."""
    old = R.module_objects("def f(x):\n    from dcft.train import fit\n    if x:\n        import dcft.models as M\n"
                           "    return fit(x)\n")
    moved = R.module_objects(f"def f(x):\n    from dcft.harness.train import fit\n    if x:\n"
                             f"        import dcft.harness.models as M\n    {body}\n")
    assert (old == moved) == (body == "return fit(x)")
