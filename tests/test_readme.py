"""The README's code runs as written (the Hub model swapped for a tiny one) and its claims hold."""

from __future__ import annotations

import re

import torch

from conftest import ROOT, tiny_model


def test_readme_api_example_runs(monkeypatch, tmp_path, tokens):
    import transformers

    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
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
