"""What a peft user gets from DCFT, on tiny BERT, RoBERTa, DeBERTa-v2, GPT-2 (Conv1D) and Llama
models built from config: default targets and counts, save / load, merge / unmerge,
merge_and_unload + save_pretrained + from_pretrained, disable, several adapters, delete, what a
training step changes, exact LoRA conversion, bf16 / fp16, low_cpu_mem_usage."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

import dcft
from dcft.methods.dcft.tuner import DcftConfig, DcftLayer, dcft_tuner_layers, orthogonal_loss, to_lora
from tiny_models import FAMILIES, batch, build

# Adapted (din, dout) per block of the paper's "all" set, written out from the architectures
# (hidden 32, FFN 64; Llama: 2 KV heads of 8 -> k_proj / v_proj 32 -> 16; GPT-2 c_attn 32 -> 96).
ADAPTED = {
    "bert": [(32, 32)] * 4 + [(32, 64), (64, 32)],
    "roberta": [(32, 32)] * 4 + [(32, 64), (64, 32)],
    "deberta-v2": [(32, 32)] * 4 + [(32, 64), (64, 32)],
    "gpt2": [(32, 96), (32, 32), (32, 128), (128, 32)],  # GPT-2's FFN is 4 x hidden
    "llama": [(32, 32), (32, 16), (32, 16), (32, 32), (32, 64), (32, 64), (64, 32)],
}


def dcft_config(family: str, **kw) -> DcftConfig:
    """SEQ_CLS (peft then trains and saves the classifier / score head); DeBERTa's pooler is new
    at load time, so it is trained and saved too (peft does not add it by itself)."""
    extra = {"modules_to_save": ["pooler"]} if family == "deberta-v2" else {}
    return DcftConfig(task_type="SEQ_CLS", **{"kernel": 8, **extra, **kw})  # the paper's efficient setting


def trained(family: str, std: float = 0.3, **kw) -> PeftModel:
    """A peft DCFT model whose trainable tensors moved away from their initial values."""
    model = get_peft_model(build(family), dcft_config(family, **kw))
    torch.manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * std)
    return model.eval()


def logits(model, seed=0):
    with torch.no_grad():
        return model(**batch(seed)).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_default_targets_and_trainable_count(family):
    """The defaults: the paper's "all" targets of the family, kernel 2 = stride (the authors' code)."""
    extra = {"modules_to_save": ["pooler"]} if family == "deberta-v2" else {}
    model = get_peft_model(build(family), DcftConfig(task_type="SEQ_CLS", **extra))
    layers = dcft_tuner_layers(model)
    assert len(layers) == 2 * len(ADAPTED[family])
    assert not any("pooler" in n for n, _ in layers)
    per_block = sum(1 * ((din - 2) // 2 + 1) + 1 * ((dout - 2) // 2 + 1) + 4 for din, dout in ADAPTED[family])
    adapter = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "dcft_" in n)
    assert adapter == 2 * per_block
    assert all(type(m.get_base_layer()).__name__ == ("Conv1D" if family == "gpt2" else "Linear") for _, m in layers)


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True], ids=["load", "low_cpu_mem"])
@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_and_from_pretrained_give_identical_outputs(family, low_cpu_mem_usage, tmp_path):
    model = trained(family)
    y = logits(model)
    assert not torch.allclose(y, logits(build(family)), atol=1e-3)  # the adapter and head matter
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["peft_type"] == "DCFT" and meta["kernel"] == 8
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 64_000  # kilobytes
    loaded = PeftModel.from_pretrained(build(family), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
    assert not any(p.is_meta for p in loaded.parameters())
    torch.testing.assert_close(logits(loaded), y, rtol=0, atol=0)


def test_deberta_pooler_must_be_saved():
    """Without `modules_to_save=["pooler"]` DeBERTa's trained pooler would be lost on reload."""
    model = get_peft_model(build("deberta-v2"), DcftConfig(task_type="SEQ_CLS"))
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".pooler." in n)
    model = get_peft_model(build("deberta-v2"), dcft_config("deberta-v2"))
    assert any(p.requires_grad for n, p in model.named_parameters() if ".pooler." in n)


@pytest.mark.parametrize("family", FAMILIES)
def test_merge_unmerge_and_merge_and_unload_saves_a_plain_model(family, tmp_path):
    import transformers

    model = trained(family)
    y = logits(model)
    weights = {n: m.get_base_layer().weight.detach().clone() for n, m in dcft_tuner_layers(model)}
    model.merge_adapter()
    torch.testing.assert_close(logits(model), y, rtol=1e-5, atol=1e-5)
    model.unmerge_adapter()
    for n, m in dcft_tuner_layers(model):
        torch.testing.assert_close(m.get_base_layer().weight, weights[n], rtol=0, atol=1e-6)
    plain = model.merge_and_unload()
    assert not any(isinstance(m, DcftLayer) for m in plain.modules())
    assert type(plain).__module__.startswith("transformers.")
    torch.testing.assert_close(logits(plain), y, rtol=1e-5, atol=1e-5)
    plain.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(logits(reloaded), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_disable_adapter_gives_the_base_model(family):
    base_logits = logits(build(family))
    model = trained(family)
    assert not torch.allclose(logits(model), base_logits, atol=1e-3)
    with model.disable_adapter():
        torch.testing.assert_close(logits(model), base_logits, rtol=0, atol=0)
    assert not torch.allclose(logits(model), base_logits, atol=1e-3)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_several_adapters_add_set_two_active_and_delete(family):
    """No head wrapper here (no task_type): peft's modules_to_save allows one active adapter only."""
    model = get_peft_model(build(family), DcftConfig())
    model.add_adapter("second", DcftConfig(kernel=4, stride=2, alpha=16.0))
    torch.manual_seed(9)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "dcft_" in n:
                p.normal_(0, 0.3)
    y_default = logits(model)
    model.set_adapter("second")
    y_second = logits(model)
    assert not torch.allclose(y_second, y_default, atol=1e-4)
    # two active adapters: outputs equal the base model with both updates merged into the weights
    model.base_model.set_adapter(["default", "second"])
    y_both = logits(model)
    merged = copy.deepcopy(model)
    merged.base_model.merge_adapter(["default", "second"])
    for _, m in dcft_tuner_layers(merged):
        assert m.merged_adapters == ["default", "second"]
    torch.testing.assert_close(logits(merged), y_both, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y_both, y_default, atol=1e-4) and not torch.allclose(y_both, y_second, atol=1e-4)
    model.base_model.set_adapter("default")
    model.delete_adapter("second")
    assert all(set(m.dcft_A) == {"default"} for _, m in dcft_tuner_layers(model))
    torch.testing.assert_close(logits(model), y_default)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_training_step_changes_only_adapter_and_head(family):
    model = get_peft_model(build(family), dcft_config(family, reg_orth_coef=0.1))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(**batch(), labels=torch.tensor([0, 1, 1]))
    reg = orthogonal_loss(model)
    (out.loss + reg).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    adapter = {n for n, _ in model.named_parameters() if "dcft_" in n}
    head = {n for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" in n}
    assert adapter and adapter <= changed  # every A, B, C moved (normal init: all have gradients)
    assert head and changed <= adapter | head  # nothing of the frozen backbone


def test_orthogonal_loss_by_hand():
    model = get_peft_model(build("bert"), DcftConfig(kernel=8, rank=2, reg_orth_coef=0.5))
    norms = []
    for _, m in dcft_tuner_layers(model):
        A, B = m.dcft_A["default"], m.dcft_B["default"]
        norms.append(((A @ A.t() - torch.eye(2)) ** 2).sum().sqrt())
        norms.append(((B.t() @ B - torch.eye(2)) ** 2).sum().sqrt())
    torch.testing.assert_close(orthogonal_loss(model), 0.5 * sum(norms) / len(norms))
    assert orthogonal_loss(get_peft_model(build("bert"), DcftConfig(reg_orth_coef=0.0))) is None


@pytest.mark.parametrize("family", ["bert", "deberta-v2", "gpt2", "llama"])
def test_lora_conversion_is_exact(family):
    model = trained(family, kernel=8, stride=4, rank=2)
    model.double()
    y = logits(model)
    lora_config, state = to_lora(model)
    assert lora_config.r == 16 and lora_config.lora_alpha == 16  # rank k*d, scaling 1
    lora = get_peft_model(build(family).double(), lora_config)
    result = set_peft_model_state_dict(lora, state)
    assert not [k for k in result.unexpected_keys]
    torch.testing.assert_close(logits(lora.eval()), y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_half_precision_forward_and_backward(family, dtype):
    """A half-precision model with the float32 model's trained adapter gives its logits to within
    half-precision rounding (measured <= 0.002 here), far below what the adapter changes (>= 0.09)."""
    ref = trained(family, std=0.05)
    y_ref = logits(ref)
    assert (y_ref - logits(build(family))).abs().max() > 0.05
    model = get_peft_model(build(family, dtype=dtype), dcft_config(family))
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in ref.state_dict().items()})
    y = model(**batch()).logits
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), y_ref, rtol=0.02, atol=0.01)
    y.float().sum().backward()
    adapter = [p for n, p in model.named_parameters() if "dcft_" in n]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in adapter)


def test_half_precision_model_gets_float32_adapters_by_default():
    model = get_peft_model(build("llama", dtype=torch.bfloat16), DcftConfig(task_type="SEQ_CLS"))
    assert {p.dtype for n, p in model.named_parameters() if "dcft_" in n} == {torch.float32}
    assert model(**batch()).logits.dtype == torch.bfloat16


def test_targets_as_regex_list_layers_and_kernel_pattern():
    model = get_peft_model(build("llama"), DcftConfig(target_modules=r".*\.0\.self_attn\.(q|v)_proj"))
    assert [n.split("model.")[-1] for n, _ in dcft_tuner_layers(model)] == ["layers.0.self_attn.q_proj",
                                                                           "layers.0.self_attn.v_proj"]
    model = get_peft_model(build("bert"), DcftConfig(target_modules=["query", "value"], layers_to_transform=[1],
                                                     kernel=8, kernel_pattern={"value": 4}))
    shapes = {n.split("encoder.")[-1]: tuple(m.dcft_C["default"].shape) for n, m in dcft_tuner_layers(model)}
    assert shapes == {"layer.1.attention.self.query": (8, 8), "layer.1.attention.self.value": (4, 4)}


def test_a_kernel_that_does_not_fit_fails_before_any_module_changes():
    base = build("bert")
    with pytest.raises(ValueError, match=r"does not fit 12 target module\(s\); nothing was changed") as e:
        get_peft_model(base, DcftConfig(kernel=5))
    assert "kernel=stride in {1, 2, 4, 8, 16, 32}" in str(e.value)
    assert not any(isinstance(m, DcftLayer) for m in base.modules())


def test_an_added_adapter_that_does_not_fit_changes_nothing():
    model = get_peft_model(build("bert"), DcftConfig(kernel=8))
    with pytest.raises(ValueError, match="does not fit 12 target module"):
        model.add_adapter("bad", DcftConfig(kernel=5))
    assert all(set(m.dcft_A) == {"default"} for _, m in dcft_tuner_layers(model))


def test_unknown_model_type_needs_targets():
    model = torch.nn.Sequential(torch.nn.Linear(16, 16))  # peft calls a model without config "custom"
    with pytest.raises(ValueError, match="no default targets for model_type 'custom'"):
        get_peft_model(model, DcftConfig())
    assert len(dcft_tuner_layers(get_peft_model(model, DcftConfig(target_modules=["0"])))) == 1


def test_top_level_names():
    assert dcft.DcftConfig is DcftConfig and dcft.orthogonal_loss is orthogonal_loss and dcft.to_lora is to_lora
    assert isinstance(LoraConfig(), LoraConfig)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_peft_convert_to_lora_reads_our_delta_weight(family):
    """peft's own convert_to_lora (SVD of get_delta_weight, float32) at rank k*d reproduces the model:
    get_delta_weight has the base layout (Delta^T for nn.Linear, Delta for Conv1D) and scale."""
    from peft import convert_to_lora

    model = trained(family, std=0.05, kernel=8)
    y = logits(model)
    lora_config, state = convert_to_lora(model, rank=8)
    lora = get_peft_model(build(family), lora_config)
    set_peft_model_state_dict(lora, state)
    torch.testing.assert_close(logits(lora.eval()), y, rtol=1e-4, atol=1e-4)


def test_load_adapter_adds_a_second_saved_adapter(tmp_path):
    first, second = trained("llama"), trained("llama", std=0.1)
    y1, y2 = logits(first), logits(second)
    first.save_pretrained(tmp_path / "one")
    second.save_pretrained(tmp_path / "two")
    model = PeftModel.from_pretrained(build("llama"), tmp_path / "one")
    model.load_adapter(tmp_path / "two", adapter_name="two")
    model.set_adapter("two")
    torch.testing.assert_close(logits(model), y2, rtol=0, atol=0)
    model.set_adapter("default")
    torch.testing.assert_close(logits(model), y1, rtol=0, atol=0)
