"""Mixed-adapter batches (peft's `adapter_names`): each row of one batch goes through its own
adapter ("__base__": none), in `forward` and in `generate`. The oracle is the plain path: each row
run alone with its adapter set active (or adapters disabled for "__base__")."""

from __future__ import annotations

import contextlib

import pytest
import torch
from peft import get_peft_model

import dcft  # noqa: F401  (registers DCFT with peft)
from dcft.methods.dcft.tuner import DcftConfig, DcftLayer
from tiny_models import COMMON, CUSTOM, CUSTOM_TARGETS, batch, build, custom_input

NAMES = ["other", "__base__", "default", "other", "third", "default"]  # one per row, repeats and gaps


def with_adapters(model, kind: str | None = None, targets=None, **extra):
    """`model` with three DCFT adapters of different settings, all moved away from their start."""
    targets = targets or {}
    configs = {"default": dict(kernel=8), "other": dict(kernel=4, stride=2, alpha=8.0), "third": dict(kernel=2)}
    first = True
    for name, kw in configs.items():
        cfg = DcftConfig(**{"target_modules": targets.get(name, CUSTOM_TARGETS.get(kind)), **kw, **extra})
        if first:
            model, first = get_peft_model(model, cfg), False
        else:
            model.add_adapter(name, cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if any(f".{a}" in n for a in configs) and p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def row_alone(model, name: str, run):
    """Output of `run()` with adapter `name` active, or with adapters disabled for "__base__"."""
    if name == "__base__":
        ctx = model.disable_adapter()
    else:
        model.set_adapter(name)
        ctx = contextlib.nullcontext()
    with ctx, torch.no_grad():
        return run()


def per_row_oracle(model, x, names, call=lambda m, x: m(x)):
    rows = [row_alone(model, n, lambda i=i: call(model, x[i:i + 1])) for i, n in enumerate(names)]
    model.set_adapter("default")
    return torch.cat(rows)


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_mixed_batch_equals_each_row_through_its_own_adapter(kind):
    model = with_adapters(CUSTOM[kind](), kind)
    x = custom_input(kind, rows=len(NAMES))
    with torch.no_grad():
        y = model(x, adapter_names=NAMES)
        y_active = model(x)
    expected = per_row_oracle(model, x, NAMES)
    torch.testing.assert_close(y, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(y, y_active, atol=1e-3)  # not what the active adapter alone gives
    assert all(not m._forward_pre_hooks for m in model.modules() if isinstance(m, DcftLayer))  # hooks removed


def test_adapters_on_different_layers_touch_only_their_own_rows():
    """"default" adapts layers.0 only, "other" layers.1 and 2: each row gets its adapter's layers only."""
    from tiny_models import MLP

    model = with_adapters(MLP(), "linear", targets={"default": ["layers.0.proj"],
                                                    "other": ["layers.1.proj", "layers.2.proj"]})
    x = custom_input("linear", rows=len(NAMES))
    with torch.no_grad():
        y = model(x, adapter_names=NAMES)
    torch.testing.assert_close(y, per_row_oracle(model, x, NAMES), rtol=1e-6, atol=1e-6)


def test_mixed_batch_with_a_classifier_per_adapter():
    """SEQ_CLS: each adapter trains its own classifier (modules_to_save); "__base__" rows use the
    original head. Rows of a tiny BERT classified through their adapter's layers and head."""
    model = with_adapters(build("bert"), task_type="SEQ_CLS")
    ids = torch.randint(3, 100, (len(NAMES), 9), generator=torch.Generator().manual_seed(1))
    call = lambda m, x: m(input_ids=x).logits  # noqa: E731
    with torch.no_grad():
        y = model(input_ids=ids, adapter_names=NAMES).logits
    torch.testing.assert_close(y, per_row_oracle(model, ids, NAMES, call), rtol=1e-5, atol=1e-5)


def causal_lm(family: str):
    import transformers as tf

    torch.manual_seed(0)
    if family == "llama":
        cfg = tf.LlamaConfig(**COMMON, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=1)
        return tf.LlamaForCausalLM(cfg)
    return tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=100,
                                            pad_token_id=0, bos_token_id=1, eos_token_id=1))


@pytest.mark.parametrize("beams", [1, 2], ids=["greedy", "beam2"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_generate_with_mixed_adapters_equals_each_row_alone(family, beams):
    model = with_adapters(causal_lm(family), task_type="CAUSAL_LM")
    names = ["third", "__base__", "default", "other"]
    ids = torch.randint(3, 100, (len(names), 6), generator=torch.Generator().manual_seed(2))
    kw = dict(max_new_tokens=6, do_sample=False, num_beams=beams, min_new_tokens=6, pad_token_id=0)
    gen = lambda m, x: m.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)  # noqa: E731
    with torch.no_grad():
        mixed = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), adapter_names=names, **kw)
    expected = per_row_oracle(model, ids, names, gen)
    assert torch.equal(mixed, expected)
    assert len({tuple(r[6:].tolist()) for r in expected}) > 1  # the adapters do generate differently


# --- peft's errors ----------------------------------------------------------------------------------------------
def test_adapter_names_errors_as_peft():
    model = with_adapters(CUSTOM["linear"](), "linear")
    x = custom_input("linear", rows=3)
    with pytest.raises(ValueError, match="Length of `adapter_names` should be the same as the number of inputs, "
                                         "but got 2 and 3"):
        model(x, adapter_names=["default", "other"])
    with pytest.raises(ValueError, match=r"Trying to infer with non-existing adapter\(s\): nope"):
        model(x, adapter_names=["default", "nope", "__base__"])
    with pytest.raises(TypeError, match="expected a list of str"):
        model(x, adapter_names="default")
    model.train()
    with pytest.raises(ValueError, match="Cannot pass `adapter_names` when the model is in training mode."):
        model(x, adapter_names=["default"] * 3)
    model.eval()
    model.base_model.merge_adapter(["default"])
    with pytest.raises(ValueError, match="Cannot pass `adapter_names` when there are merged adapters, please call "
                                         "`unmerge_adapter` first."):
        model(x, adapter_names=["default"] * 3)
    assert all(not m._forward_pre_hooks for m in model.modules() if isinstance(m, DcftLayer))  # removed on error too
    model.base_model.unmerge_adapter()
    with torch.no_grad():
        torch.testing.assert_close(model(x, adapter_names=["default"] * 3), model(x), rtol=1e-6, atol=1e-6)
