"""The harness saves what it trained: a run writes its best and final adapters (peft format, head
included) beside result.json, and plain peft reloads them to the run's recorded dev scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose_cfg, tiny_model
from dcft.report import results
from dcft.harness.experiment import run
from dcft.harness.export import NotSavable, evaluate_run_adapter, load_run_adapter, save_peft_adapter
from test_experiment import TINY_RUN, write_learnable_rte  # tests/ is on the path (its conftest)


def write_learnable_stsb(root: Path, n_train: int = 160, n_dev: int = 48, seed: int = 0) -> Path:
    """STS-B layout whose score is the number of "yes" among five words of sentence2: a continuous
    dev score (Pearson), so the best and the final evaluation differ and the test tells them apart."""
    import random

    rng = random.Random(seed)
    (root / "STS-B").mkdir(parents=True)
    head = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["\t".join(head)]
        for i in range(n):
            yes = rng.randint(0, 5)
            words = ["yes"] * yes + ["no"] * (5 - yes)
            rng.shuffle(words)
            s1 = " ".join(rng.choice(["cat", "dog", "sun", "tree"]) for _ in range(4))
            rows.append("\t".join([str(i), "main", "f", "2012", f"{i:04d}", "none", "none", s1, " ".join(words),
                                   f"{yes:.3f}"]))
        (root / "STS-B" / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def glue_dir(tmp_path):
    return write_learnable_stsb(write_learnable_rte(tmp_path / "glue"))


@pytest.mark.parametrize("method", ["dcft", "lora"])
def test_run_saves_best_and_final_adapters_that_reproduce_its_scores(method, glue_dir, tmp_path):
    over = [o for o in TINY_RUN if not o.startswith(("task=", "train.eval_steps"))]
    over += ["task=stsb", "train.eval_steps=10", f"method={method}", f"data.glue_dir={glue_dir}"]
    run(compose_cfg(over + (["kernel=8"] if method == "dcft" else [])), tmp_path / "run", choices={"method": method})
    rec = results.read_result(tmp_path / "run")
    assert rec["adapter"] == {"format": "peft", "dir": str(tmp_path / "run" / "adapter"), "best": "adapter/best",
                              "final": "adapter/final"}
    meta = json.loads((tmp_path / "run" / "adapter" / "best" / "adapter_config.json").read_text())
    assert meta["peft_type"] == ("DCFT" if method == "dcft" else "LORA")
    assert meta["modules_to_save"] == ["bert.pooler.dense", "classifier"]
    assert (tmp_path / "run" / "adapter" / "final" / "adapter_model.safetensors").stat().st_size < 100_000
    history = rec["metrics"]["history"]
    assert len({h["score"] for h in history}) == len(history)  # every evaluation differs
    assert rec["metrics"]["best"]["step"] != history[-1]["step"], "best and final must differ for this test"
    best = evaluate_run_adapter(tmp_path / "run", "best").score
    final = evaluate_run_adapter(tmp_path / "run", "final").score
    assert best == pytest.approx(rec["metrics"]["best"]["score"], rel=1e-6, abs=1e-6)
    assert final == pytest.approx(history[-1]["score"], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("name", ["dcft", "lora", "lorafa", "adalora"])
def test_saved_adapter_reloads_with_plain_peft_to_identical_outputs(name, tokens, tmp_path):
    from peft import PeftModel

    from dcft.methods import build_method

    model = tiny_model("tiny-deberta")
    method = build_method({"name": name})
    method.apply(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for _, p in method.trainable_parameters(model):  # adapter, head and DeBERTa's new pooler
            p.add_(torch.randn_like(p) * 0.3)
        y = model(**tokens).logits
        assert not torch.allclose(y, tiny_model("tiny-deberta")(**tokens).logits, atol=1e-3)
    save_peft_adapter(model, method, tmp_path / "a")
    reloaded = PeftModel.from_pretrained(tiny_model("tiny-deberta"), tmp_path / "a").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**tokens).logits, y, rtol=0, atol=0)


def test_adalora_after_rank_allocation_reloads_identically_and_keeps_its_config(tokens, tmp_path):
    """After allocation AdaLoRA has a rank pattern and zeros in lora_E; the export must not need
    peft's AdaLoraModel wrapper nor rewrite the run's live config."""
    from peft import PeftModel

    from dcft.methods import build_method

    model = tiny_model("tiny-bert")
    method = build_method({"name": "adalora"})
    method.apply(model)
    torch.manual_seed(2)
    pattern = {}
    with torch.no_grad():
        for _, p in method.trainable_parameters(model):
            p.add_(torch.randn_like(p) * 0.3)
        for name, m in model.named_modules():
            if hasattr(m, "lora_E") and "default" in m.lora_E:
                keep = [i % 2 == 0 for i in range(m.lora_E["default"].shape[0])]
                m.lora_E["default"][[not k for k in keep]] = 0.0  # what allocation does to pruned ranks
                pattern[f"{name}.lora_E.default"] = keep
        y = model(**tokens).logits
    config = model.peft_config["default"]
    config.rank_pattern = dict(pattern)
    save_peft_adapter(model, method, tmp_path / "a")
    assert model.peft_config["default"] is config and config.rank_pattern == pattern
    reloaded = PeftModel.from_pretrained(tiny_model("tiny-bert"), tmp_path / "a").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**tokens).logits, y, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["bitfit", "hadapter", "sora", "full"])
def test_methods_without_a_peft_format_say_so(name, tmp_path):
    from dcft.methods import build_method

    model = tiny_model("tiny-bert")
    method = build_method({"name": name})
    method.apply(model)
    with pytest.raises(NotSavable, match=f"method '{name}' has no peft adapter format"):
        save_peft_adapter(model, method, tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_load_run_adapter_says_why_there_is_none(tmp_path):
    results.atomic_write_json(tmp_path / results.RESULT_FILE, {"status": "completed", "config": {},
                                                               "adapter": {"format": None, "reason": "no format"}})
    with pytest.raises(FileNotFoundError, match="no format"):
        load_run_adapter(tmp_path)
