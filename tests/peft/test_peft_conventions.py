"""peft's conventions for DCFT, case by case as peft's own custom-model tests check them (written
here), on a custom MLP (nn.Linear) and a custom model with GPT-2's Conv1D: init_weights, bias,
disable / enable, merge / unmerge / safe_merge / unload, several adapters, save / load with every
config field, and targets that are all checked before the first module is replaced."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model, inject_adapter_in_model
from peft.config import PeftConfig as BasePeftConfig
from safetensors.torch import load_file

import dcft  # noqa: F401  (registers DCFT with peft)
from dcft.methods.dcft.tuner import DcftConfig, DcftLayer, dcft_tuner_layers
from test_peft_layer import delta_by_loops  # the transposed convolution written as loops (the oracle)
from tiny_models import CUSTOM, CUSTOM_TARGETS, MLP, build, custom_input

KINDS = ("linear", "conv1d")


def make(kind: str, **kw):
    """A peft DCFT model (kernel 8) over the custom model of `kind`, and the untouched base."""
    base = CUSTOM[kind]()
    model = get_peft_model(copy.deepcopy(base), DcftConfig(**{"target_modules": CUSTOM_TARGETS[kind],
                                                              "kernel": 8, **kw}))
    return model.eval(), base.eval()


def perturb(model, std: float = 0.3, seed: int = 7):
    """Move every trainable tensor away from its start, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * std)
    return model


def out(model, kind, rows: int = 6):
    with torch.no_grad():
        return model(custom_input(kind, rows))


# --- init_weights ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kw,identity", [
    ({}, False),  # the authors' N(0, 0.02): not the identity at step 0
    ({"init_weights": True}, False),
    ({"init_weights": False}, False),
    ({"init_weights": False, "init": "zero"}, False),  # False wins over an identity init
    ({"init": "zero"}, True),
    ({"init": "lora"}, True),
    ({"init_weights": "zero"}, True),  # a name sets `init`
    ({"init_weights": "lora"}, True),
], ids=lambda v: str(v))
def test_init_weights_decides_whether_a_fresh_adapter_is_the_identity(kind, kw, identity):
    model, base = make(kind, **kw)
    y, y0 = out(model, kind), out(base, kind)
    if identity:
        torch.testing.assert_close(y, y0, rtol=0, atol=0)
    else:
        assert (y - y0).abs().max() > 1e-6  # measurably moved (N(0, 0.02)^3 times scaling 16)
    if isinstance(kw.get("init_weights"), str):
        assert model.peft_config["default"].init == kw["init_weights"]


def test_init_weights_false_draws_normal_whatever_init_says():
    """False gives A, B, C ~ N(0, init_std): every C nonzero, spread near init_std."""
    model, _ = make("linear", init="lora", init_weights=False, init_std=0.05)
    values = torch.cat([m.dcft_C["default"].flatten() for _, m in dcft_tuner_layers(model)]
                       + [m.dcft_B["default"].flatten() for _, m in dcft_tuner_layers(model)])
    assert (values != 0).all() and 0.03 < values.std() < 0.07


@pytest.mark.parametrize("kw,match", [
    ({"init_weights": "gaussian"}, r"DcftConfig.init_weights='gaussian' is not known; valid: True, False, normal"),
    ({"init_weights": 1.5}, r"DcftConfig.init_weights=1.5 is not known"),
    ({"init_weights": "zero", "init": "lora"}, r"init_weights='zero' and init='lora' name two different starts"),
    ({"bias": "lora_only"}, r"DcftConfig.bias='lora_only' is not known; valid: none, all, dcft_only"),
])
def test_config_errors_for_the_peft_fields(kw, match):
    with pytest.raises(ValueError, match=match):
        DcftConfig(**kw)


# --- bias --------------------------------------------------------------------------------------------------------
# The biases each choice trains, written out from the models' structure (LoRA's meaning of `bias`).
BIAS_NAMES = {
    ("linear", "all"): {"layers.0.proj", "layers.1.proj", "layers.2.proj", "head"},
    ("linear", "dcft_only"): {"layers.0.proj", "layers.1.proj", "layers.2.proj"},
    ("conv1d", "all"): {"conv", "lin"},
    ("conv1d", "dcft_only"): {"conv"},
}


def bias_owner(name: str) -> str:
    """'base_model.model.layers.0.proj.base_layer.bias' -> 'layers.0.proj'."""
    return name.removeprefix("base_model.model.").removesuffix(".bias").removesuffix(".base_layer")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", ["none", "all", "dcft_only"])
def test_bias_choice_trains_saves_and_reloads_exactly_those_biases(kind, bias, tmp_path):
    model, base = make(kind, bias=bias)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.endswith(".bias")}
    assert {bias_owner(n) for n in trainable} == BIAS_NAMES.get((kind, bias), set())
    perturb(model)
    y = out(model, kind)
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {bias_owner(k) for k in saved if k.endswith(".bias")} == BIAS_NAMES.get((kind, bias), set())
    assert json.loads((tmp_path / "adapter_config.json").read_text())["bias"] == bias
    loaded = PeftModel.from_pretrained(CUSTOM[kind](), tmp_path).eval()
    torch.testing.assert_close(out(loaded, kind), y, rtol=0, atol=0)  # the trained biases came back
    if bias != "none":
        with pytest.warns(UserWarning, match="disabling adapter layers with bias"):
            loaded.base_model.disable_adapter_layers()
        assert not torch.allclose(out(loaded, kind), out(base, kind))  # biases stay trained (peft's rule)


def test_only_one_adapter_may_train_biases():
    model, _ = make("linear", bias="all")
    with pytest.raises(ValueError, match="supports only 1 adapter with bias"):
        model.add_adapter("other", DcftConfig(target_modules=["proj"], kernel=8, bias="dcft_only"))


# --- disable / enable, merge / unmerge / safe_merge / unload ------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_disable_and_enable_adapters(kind):
    model, base = make(kind)
    perturb(model)
    y, y0 = out(model, kind), out(base, kind)
    assert (y - y0).abs().max() > 0.05
    with model.disable_adapter():
        torch.testing.assert_close(out(model, kind), y0, rtol=0, atol=0)
    torch.testing.assert_close(out(model, kind), y, rtol=0, atol=0)
    model.base_model.disable_adapter_layers()
    torch.testing.assert_close(out(model, kind), y0, rtol=0, atol=0)
    model.base_model.enable_adapter_layers()
    torch.testing.assert_close(out(model, kind), y, rtol=0, atol=0)


def base_weights(model) -> dict[str, torch.Tensor]:
    return {n: m.get_base_layer().weight.detach().clone() for n, m in dcft_tuner_layers(model)}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("safe", [False, True], ids=["merge", "safe_merge"])
def test_merge_unmerge_and_unload(kind, safe):
    model, base = make(kind)
    perturb(model)
    y, y0, w0 = out(model, kind), out(base, kind), base_weights(model)
    model.base_model.merge_adapter(safe_merge=safe)
    assert all(m.merged for _, m in dcft_tuner_layers(model))
    assert any(not torch.equal(m.get_base_layer().weight, w0[n]) for n, m in dcft_tuner_layers(model))
    torch.testing.assert_close(out(model, kind), y, rtol=1e-5, atol=1e-5)
    with model.disable_adapter():  # a merged adapter is taken out again while disabled
        torch.testing.assert_close(out(model, kind), y0, rtol=1e-5, atol=1e-5)
    model.merge_adapter()
    model.unmerge_adapter()
    for n, m in dcft_tuner_layers(model):
        torch.testing.assert_close(m.get_base_layer().weight, w0[n], rtol=0, atol=1e-6)
    torch.testing.assert_close(out(model, kind), y, rtol=1e-5, atol=1e-5)
    plain = copy.deepcopy(model).merge_and_unload(safe_merge=safe)
    assert not any(isinstance(m, DcftLayer) for m in plain.modules())
    torch.testing.assert_close(out(plain, kind), y, rtol=1e-5, atol=1e-5)
    unloaded = copy.deepcopy(model).unload()
    assert not any(isinstance(m, DcftLayer) for m in unloaded.modules())
    torch.testing.assert_close(out(unloaded, kind), y0, rtol=0, atol=1e-6)  # after merge + unmerge rounding


@pytest.mark.parametrize("kind", KINDS)
def test_safe_merge_refuses_a_broken_adapter_and_changes_nothing(kind):
    model, _ = make(kind)
    layer = dcft_tuner_layers(model)[0][1]
    with torch.no_grad():
        layer.dcft_C["default"][0, 0] = float("nan")
    w0 = base_weights(model)
    with pytest.raises(ValueError, match="NaNs detected in the merged weights"):
        model.base_model.merge_adapter(safe_merge=True)
    for n, m in dcft_tuner_layers(model):
        assert torch.equal(m.get_base_layer().weight, w0[n])
    assert not layer.merged


# --- several adapters ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_two_adapters_switch_combine_and_delete(kind):
    model, base = make(kind)
    model.add_adapter("other", DcftConfig(target_modules=CUSTOM_TARGETS[kind], kernel=4, stride=2, alpha=8.0))
    perturb(model)
    model.base_model.set_adapter(["default", "other"])  # both trainable: perturb them too
    perturb(model, seed=8)
    model.base_model.set_adapter("default")
    y_default = out(model, kind)
    model.set_adapter("other")
    y_other = out(model, kind)
    assert (y_default - y_other).abs().max() > 0.05
    # both active: the base model with both updates written into its weights by hand (oracle)
    model.base_model.set_adapter(["default", "other"])
    y_both = out(model, kind)
    oracle = copy.deepcopy(base)
    for name, layer in dcft_tuner_layers(model):
        w = oracle.get_submodule(name.removeprefix("base_model.model.")).weight
        for adapter, scaling in (("default", 32 / (2 + 1e-5)), ("other", 8 / (2 + 1e-5))):
            A, B, C = (getattr(layer, f"dcft_{x}")[adapter].detach() for x in "ABC")
            delta = scaling * delta_by_loops(A, B, C, layer.dcft_stride[adapter])
            with torch.no_grad():
                w.add_(delta if kind == "conv1d" else delta.t())
    torch.testing.assert_close(y_both, out(oracle, kind), rtol=1e-5, atol=1e-5)
    model.base_model.set_adapter("default")
    model.delete_adapter("other")
    assert all(set(m.dcft_A) == {"default"} for _, m in dcft_tuner_layers(model))
    torch.testing.assert_close(out(model, kind), y_default, rtol=0, atol=0)


# --- save / load with every config field ---------------------------------------------------------------------
EVERY_FIELD = dict(
    kernel=16, stride=8, rank=2, alpha=8.0, r=3.0, dropout=0.1, init="lora", init_std=0.05, init_weights="lora",
    bias="dcft_only", impl="reference", reg_orth_coef=0.3, target_modules=["proj"], exclude_modules=["head"],
    layers_to_transform=[0, 2], layers_pattern="layers", modules_to_save=["head"],
    kernel_pattern={"layers.2.proj": 8}, stride_pattern={"layers.2.proj": 4},
)


def test_every_dcft_field_is_covered_by_the_save_load_test():
    """A field added to DcftConfig later must be added to EVERY_FIELD too, with a non-default value."""
    own = {f.name for f in dataclasses.fields(DcftConfig)} - {f.name for f in dataclasses.fields(BasePeftConfig)}
    assert own == set(EVERY_FIELD)
    defaults = DcftConfig()
    for key, value in EVERY_FIELD.items():
        assert getattr(defaults, key) != value, key


@pytest.mark.parametrize("conv1d", [False, True], ids=["linear", "conv1d"])
def test_save_and_load_keep_every_field_and_the_function(conv1d, tmp_path):
    model = get_peft_model(MLP(conv1d=conv1d), DcftConfig(**EVERY_FIELD)).eval()
    layers = dict((n.removeprefix("base_model.model."), m) for n, m in dcft_tuner_layers(model))
    assert sorted(layers) == ["layers.0.proj", "layers.2.proj"]  # layers_to_transform [0, 2]
    assert tuple(layers["layers.0.proj"].dcft_C["default"].shape) == (16, 16)  # kernel 16, stride 8
    assert tuple(layers["layers.2.proj"].dcft_A["default"].shape) == (2, (32 - 8) // 4 + 1)  # patterns: 8, 4
    perturb(model)
    y = out(model, "linear")
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    for key, value in EVERY_FIELD.items():
        got = saved[key]
        assert (sorted(got) if isinstance(value, list) else got) == value, key
    config = PeftConfig.from_pretrained(str(tmp_path))
    assert isinstance(config, DcftConfig)
    for key, value in EVERY_FIELD.items():
        got = getattr(config, key)
        assert (sorted(got) if isinstance(got, (set, list)) else got) == value, key
    loaded = PeftModel.from_pretrained(MLP(conv1d=conv1d), tmp_path).eval()
    torch.testing.assert_close(out(loaded, "linear"), y, rtol=0, atol=0)
    saved_tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {bias_owner(k) for k in saved_tensors if k.endswith(".bias") and "head" not in k} == {
        "layers.0.proj", "layers.2.proj"}  # bias="dcft_only": the adapted layers' biases
    layer = dict((n.removeprefix("base_model.model."), m) for n, m in dcft_tuner_layers(loaded))["layers.2.proj"]
    assert layer.dcft_stride["default"] == 4 and layer.dcft_impl["default"] == "reference"
    assert layer.dcft_scaling["default"] == pytest.approx(8.0 / (3.0 + 1e-5))
    assert layer.dcft_dropout["default"].p == 0.1


# --- every target checked before the first module is replaced ---------------------------------------------------
def unchanged(model: torch.nn.Module, before: dict) -> bool:
    """No module was replaced or wrapped: the same module objects under the same names."""
    return {n: id(m) for n, m in model.named_modules()} == before


def misfit_state_dict() -> dict[str, torch.Tensor]:
    """DCFT tensors named as transformers' peft integration passes them (module names of the model
    itself) for every MLP block: layers.2 does not fit kernel 16. Only the keys matter."""
    return {f"layers.{i}.proj.dcft_{x}": torch.zeros(1) for i in range(3) for x in "ABC"}


@pytest.mark.parametrize("how,kw", [
    ("list", {"target_modules": ["proj"]}),
    ("regex", {"target_modules": r"layers\.\d\.proj"}),
    ("all-linear", {"target_modules": "all-linear"}),
    ("layers_to_transform", {"target_modules": ["proj"], "layers_to_transform": [0, 2], "layers_pattern": "layers"}),
    ("state_dict", {"target_modules": ["layers.0.proj"]}),  # the state dict's keys decide, not target_modules
])
def test_a_misfit_target_fails_before_any_module_is_replaced(how, kw):
    """Kernel 16 fits layers.0 and layers.1 but not layers.2 (32 -> 24): the error names it, and the
    caller's model is left exactly as it was (no module replaced, however the targets were named)."""
    model = MLP()
    before = {n: id(m) for n, m in model.named_modules()}
    with pytest.raises(ValueError, match=r"nothing was changed") as e:
        if how == "state_dict":
            inject_adapter_in_model(DcftConfig(kernel=16, **kw), model, state_dict=misfit_state_dict())
        else:
            get_peft_model(model, DcftConfig(kernel=16, **kw))
    assert "'layers.2.proj' (din=32, dout=24)" in str(e.value)
    assert unchanged(model, before)


def test_all_linear_names_every_misfit_on_a_transformers_model():
    """"all-linear" is expanded with peft's own rules (classifier excluded for SEQ_CLS) before the check."""
    model = build("bert")
    before = {n: id(m) for n, m in model.named_modules()}
    with pytest.raises(ValueError, match=r"does not fit 13 target module\(s\)"):  # 12 targets + the pooler
        get_peft_model(model, DcftConfig(kernel=5, target_modules="all-linear", task_type="SEQ_CLS"))
    assert unchanged(model, before)
    model = get_peft_model(model, DcftConfig(kernel=8, target_modules="all-linear", task_type="SEQ_CLS"))
    names = {n.split("model.")[-1] for n, _ in dcft_tuner_layers(model)}
    assert len(names) == 13 and "bert.pooler.dense" in names and "classifier" not in names


def test_a_target_that_is_not_linear_fails_before_any_module_is_replaced():
    """A name that matches a container (the block `layers.2`, visited after `layers.0.proj` fits)
    besides Linear layers: refused up front, by name."""
    model = MLP()
    before = {n: id(m) for n, m in model.named_modules()}
    with pytest.raises(ValueError, match=r"module 'layers.2' is Block"):
        get_peft_model(model, DcftConfig(kernel=8, target_modules=["proj", "layers.2"]))
    assert unchanged(model, before)
