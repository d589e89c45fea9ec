"""The README's code runs as written (the Hub model swapped for a tiny one) and its claims hold."""

from __future__ import annotations

import re

import torch

from conftest import ROOT, tiny_model


def readme_blocks() -> list[str]:
    """The Python examples of the section "Using DCFT in your own code", in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Using DCFT in your own code", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_peft_example_runs_as_written(monkeypatch, tmp_path):
    """The first example (the peft way) needs nothing but itself: it builds its model from config."""
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(readme_blocks()[0], "README.md", "exec"), ns)
    model, loaded, batch = ns["model"], ns["loaded"], ns["batch"]
    assert loaded.peft_config["default"].peft_type == "DCFT"
    assert any(p.grad is not None for n, p in model.named_parameters() if "dcft_" in n)  # backward reached A, B, C
    assert (tmp_path / "my-adapter" / "adapter_model.safetensors").stat().st_size < 64_000
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)


def test_readme_api_example_runs(monkeypatch, tmp_path, tokens):
    import transformers

    code = readme_blocks()[1]
    code = code.replace('"my-adapter/"', repr(str(tmp_path / "my-adapter")))
    # Both from_pretrained calls give the same base weights, as loading one checkpoint twice would.
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained",
                        staticmethod(lambda *a, **k: tiny_model("tiny-deberta", seed=0)))
    ns = {"batch": {**tokens, "labels": torch.tensor([0, 1, 0])}}
    exec(compile(code, "README.md", "exec"), ns)
    model, fresh, method = ns["model"], ns["fresh"], ns["method"]
    assert method.count(model).method == 936  # 2 layers x (4 x (6 + 6 + 64) + 2 x (6 + 12 + 64))
    model.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**tokens).logits, fresh(**tokens).logits)  # fresh is merged
    assert (tmp_path / "my-adapter" / "adapter.safetensors").exists()
