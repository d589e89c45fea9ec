"""Decoder LLMs in the harness (GPT-2, Llama family): pad token and last-token pooling, target sets
per decoder family (GPT-2's fused q/k/v), `targets=` as module-name lists and regexes for any model,
harness methods on GPT-2's Conv1D, and smoke runs of the tiny decoders through `dcft.harness.experiment.run`."""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import compose_cfg, model_cfg, tiny_model
from dcft.harness.experiment import run
from dcft.methods import build_method
from dcft.harness.models import (TARGET_SETS, head_parameter_names, in_out_features, load_model, load_tokenizer,
                         resolve_targets)
from test_experiment import write_learnable_rte

DECODERS = ("tiny-gpt2", "tiny-llama")
PAIRS = [("the cat", "a dog sat on the hill"), ("sun", "moon"), ("a long first sentence here", "b")]


# --- pad token and pooling -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DECODERS)
def test_tiny_decoder_pads_with_the_tokenizers_pad_id_and_has_a_score_head(name):
    model, tok = tiny_model(name), load_tokenizer(model_cfg(name))
    assert model.config.pad_token_id == tok.pad_token_id == 0  # [PAD] of the byte tokenizer
    assert "token_type_ids" not in tok(*PAIRS[0])  # decoders take no segment ids
    assert head_parameter_names(model) == ["score.weight"]
    assert model.config.use_cache is False  # a classifier never generates: no key/value cache kept


@pytest.mark.parametrize("name", DECODERS)
def test_padded_batch_classifies_each_pair_from_its_last_real_token(name):
    """Oracle: each pair alone, unpadded, where the last token is the last real one by construction.
    With a wrong pad id the model would pool a padding position of the shorter pairs."""
    model, tok = tiny_model(name), load_tokenizer(model_cfg(name))
    batch = tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # the batch really is padded
    with torch.no_grad():
        logits = model(**batch).logits
        for i, (a, b) in enumerate(PAIRS):
            alone = model(**tok(a, b, return_tensors="pt")).logits[0]
            torch.testing.assert_close(logits[i], alone, rtol=1e-5, atol=1e-5)


def _tokenizer_without_pad():
    """The byte tokenizer's vocabulary with an eos token but no pad token (as GPT-2's and Llama 3's)."""
    from transformers import PreTrainedTokenizerFast

    from dcft.harness.models import byte_tokenizer

    return PreTrainedTokenizerFast(tokenizer_object=byte_tokenizer().backend_tokenizer, eos_token="[SEP]",
                                   bos_token="[CLS]", unk_token="[UNK]")


def _local_llama(directory, pad_token_id: int | None) -> dict:
    """A tiny Llama saved with this config pad id and a tokenizer without a pad token; its model config."""
    saved = tiny_model("tiny-llama")
    saved.config.pad_token_id = pad_token_id
    saved.save_pretrained(directory)
    _tokenizer_without_pad().save_pretrained(directory)
    cfg = {**model_cfg("tiny-llama"), "source": "pretrained", "path": str(directory), "tokenizer": None}
    cfg["arch"] = {k: v for k, v in cfg["arch"].items() if k != "pad_token_id"}
    return cfg


def test_pretrained_decoder_without_pad_token_pads_with_eos_in_tokenizer_and_config(tmp_path):
    cfg = _local_llama(tmp_path, None)  # as Llama 3.2's and GPT-2's config.json
    tok = load_tokenizer(cfg)
    assert tok.pad_token == "[SEP]" and tok.pad_token_id == 2
    assert load_model(cfg).config.pad_token_id == 2


def test_decoder_config_pad_id_that_disagrees_with_the_tokenizer_is_replaced_with_a_warning(tmp_path):
    cfg = _local_llama(tmp_path, 5)
    with pytest.warns(UserWarning, match="pad_token_id=5 differs from the tokenizer's pad id 2"):
        assert load_model(cfg).config.pad_token_id == 2


# --- target sets on decoders -----------------------------------------------------------------------------
def _layers(n: int, prefix: str, suffixes: list[str]) -> list[str]:
    return [f"{prefix}.{i}.{s}" for i in range(n) for s in suffixes]


def test_llama_target_sets_take_both_ffn_input_projections_as_i():
    m = tiny_model("tiny-llama")
    attn = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    assert resolve_targets(m, "all") == _layers(2, "model.layers", attn + ["mlp.gate_proj", "mlp.up_proj",
                                                                             "mlp.down_proj"])
    assert resolve_targets(m, "qv") == _layers(2, "model.layers", ["self_attn.q_proj", "self_attn.v_proj"])
    assert resolve_targets(m, "qkvo") == _layers(2, "model.layers", attn)
    # grouped-query attention: k and v project 48 -> 2 heads x 12 = 24
    assert in_out_features(m.get_submodule("model.layers.0.self_attn.k_proj")) == (48, 24)


def test_gpt2_target_sets_never_split_the_fused_qkv_matrix():
    m = tiny_model("tiny-gpt2")
    assert resolve_targets(m, "all") == _layers(2, "transformer.h", ["attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                     "mlp.c_proj"])
    assert resolve_targets(m, "qkv") == _layers(2, "transformer.h", ["attn.c_attn"])
    assert resolve_targets(m, "qkvo") == _layers(2, "transformer.h", ["attn.c_attn", "attn.c_proj"])
    assert in_out_features(m.get_submodule("transformer.h.0.attn.c_attn")) == (48, 144)  # Conv1D, weight (in, out)
    for name in ("qk", "qv"):
        with pytest.raises(ValueError, match=f"targets='{name}'.*fuses.*valid sets for gpt2: all, qkv, qkvo"):
            resolve_targets(m, name)


# --- targets as lists and regexes ------------------------------------------------------------------------
def test_target_list_is_module_name_suffixes():
    bert, llama, gpt2 = tiny_model("tiny-bert"), tiny_model("tiny-llama"), tiny_model("tiny-gpt2")
    assert resolve_targets(bert, ["query", "value"]) == _layers(2, "bert.encoder.layer",
                                                                ["attention.self.query", "attention.self.value"])
    assert resolve_targets(llama, ("q_proj", "v_proj")) == resolve_targets(llama, "qv")
    assert resolve_targets(gpt2, ["c_proj"]) == _layers(2, "transformer.h", ["attn.c_proj", "mlp.c_proj"])
    assert resolve_targets(gpt2, ["mlp.c_proj"]) == _layers(2, "transformer.h", ["mlp.c_proj"])


def test_target_regex_is_a_full_match_on_the_dotted_name():
    llama = tiny_model("tiny-llama")
    assert resolve_targets(llama, r".*\.(q_proj|v_proj)") == resolve_targets(llama, "qv")
    assert resolve_targets(llama, r"model\.layers\.1\..*_proj") == _layers(2, "model.layers", [
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj"])[7:]
    with pytest.raises(ValueError, match=r"targets='q_proj' \(not a target set.*regex.*self_attn\.q_proj"):
        resolve_targets(llama, "q_proj")  # no module is named exactly `q_proj`: full match, not search


@pytest.mark.parametrize("spec", [["q_proj", "v_proj"], r".*layers\.0\.mlp\.(up|down)_proj", "all"])
def test_peft_adapts_exactly_the_modules_resolve_targets_names(spec):
    """Independent check of the matching rules: peft itself, given the raw spec (not our names)."""
    import peft
    from peft.tuners.tuners_utils import BaseTunerLayer

    llama = tiny_model("tiny-llama")
    names = resolve_targets(llama, spec)
    raw = names if spec == "all" else spec  # a set name is ours: peft gets its resolved names
    peft.inject_adapter_in_model(peft.LoraConfig(r=1, target_modules=raw), llama)
    assert [n for n, m in llama.named_modules() if isinstance(m, BaseTunerLayer)] == names


@pytest.mark.parametrize("model,spec,message", [
    ("tiny-bert", 3, "targets=3 \\(int\\) is not a target spec"),
    ("tiny-bert", [], "one or more module-name suffixes"),
    ("tiny-bert", ["query", ""], "offending: \\[''\\]"),
    ("tiny-bert", "(query", "neither a target set .* nor a valid regular expression"),
    ("tiny-bert", ["querry"], "\\['querry'\\] matched no nn.Linear.*self.query"),
    ("tiny-bert", ["attention"], "names BertAttention modules, not linear layers"),
    ("tiny-bert", "qz", "not a target set of all, qk, qv, qkv, qkvo"),
    ("tiny-roberta", r".*dense", "reaches the task head \\['classifier.dense'\\]"),
    ("tiny-gpt2", ["score"], "reaches the task head \\['score'\\]"),
])
def test_bad_targets_are_refused_with_the_reason(model, spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_targets(tiny_model(model), spec)


def test_named_sets_need_a_known_family_but_lists_and_regexes_work_for_any_model():
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model("opt", vocab_size=64, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                               num_attention_heads=2, max_position_embeddings=32, word_embed_proj_dim=16,
                               pad_token_id=1)
    opt = AutoModelForSequenceClassification.from_config(cfg)
    with pytest.raises(ValueError, match="'opt' has no named target sets.*targets=\\[q_proj,v_proj\\]"):
        resolve_targets(opt, "all")
    layer = "model.decoder.layers.0"
    assert set(resolve_targets(opt, ["q_proj", "v_proj"])) == {f"{layer}.self_attn.q_proj", f"{layer}.self_attn.v_proj"}
    assert resolve_targets(opt, r".*\.fc[12]") == [f"{layer}.fc1", f"{layer}.fc2"]


@pytest.mark.parametrize("method,override,expected", [
    ("lora", "targets=[query,value]", 2 * 2 * (48 + 48)),  # LoRA r=1: r (din + dout) per matrix, 2 x 2 layers
    ("lora", r"targets='.*layer\.0\..*(query|key)'", 2 * (48 + 48)),
    ("lora", "targets=all", 2 * (4 * 96 + (48 + 96) + (96 + 48))),
    ("dcft", "targets=[query,value]", 2 * 2 * (6 + 6 + 64)),  # DCFT kernel 8: din/8 + dout/8 + 8^2 per matrix
    ("dcft", r"targets='.*layer\.1\.intermediate\.dense'", 6 + 12 + 64),
])
def test_hydra_targets_take_a_list_or_a_regex(method, override, expected):
    cfg = compose_cfg(["model=tiny-bert", f"method={method}", "kernel=8", override])
    method = build_method(cfg.method)
    model = tiny_model("tiny-bert")
    method.apply(model)
    assert method.count(model).method == expected


# --- harness methods on GPT-2's Conv1D ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lora", "adalora"])
def test_peft_methods_add_their_update_to_conv1d_in_its_orientation(name):
    """Oracle: Conv1D computes x W + b with W (in, out); LoRA adds (alpha / r) x A^T B^T. The
    square attn.c_proj (48 x 48) would take a transposed update without a shape error."""
    model = tiny_model("tiny-gpt2")
    cfg = {"name": "lora", "r": 2, "alpha": 4.0} if name == "lora" else {"name": "adalora", "init_r": 2,
                                                                            "target_r": 1, "lora_alpha": 4.0}
    with warnings.catch_warnings():  # fan_in_fan_out is ours to set: peft would rewrite the config and warn
        warnings.filterwarnings("error", message=".*fan_in_fan_out")
        build_method(cfg).apply(model)
    layer = model.get_submodule("transformer.h.0.attn.c_proj")
    weight = lambda m: m.weight if isinstance(m, torch.nn.Module) else m  # noqa: E731 (LoRA: Linear; AdaLoRA: Parameter)
    A, B = weight(layer.lora_A["default"]), weight(layer.lora_B["default"])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        B.copy_(torch.randn(B.shape, generator=g))  # B starts at zero: make the update visible
    x = torch.randn(2, 5, 48, generator=g)
    W, b = layer.base_layer.weight, layer.base_layer.bias
    if name == "lora":
        update = 2.0 * x @ A.T @ B.T  # alpha / r = 4 / 2
    else:  # AdaLoRA: B diag(E) A x, scaled by lora_alpha / (live rank + 1e-5) (Zhang et al. 2023, eq. 1)
        E = layer.lora_E["default"]
        with torch.no_grad():
            E.copy_(torch.randn(E.shape, generator=g))  # E starts at zero
        update = 4.0 / (2 + 1e-5) * (x @ (A * E).T) @ B.T
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ W + b + update, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sora", "hadapter", "padapter"])
def test_linear_only_methods_refuse_gpt2_conv1d_by_name_before_changing_anything(name):
    model = tiny_model("tiny-gpt2")
    before = {n: type(m) for n, m in model.named_modules()}
    with pytest.raises(ValueError, match="transformer.h.0.*Conv1D, not nn.Linear"):
        build_method({"name": name}).apply(model)
    assert {n: type(m) for n, m in model.named_modules()} == before


def test_bitfit_on_llama_says_the_backbone_has_no_biases():
    with pytest.raises(ValueError, match="no bias parameters"):
        build_method({"name": "bitfit"}).apply(tiny_model("tiny-llama"))


# --- end to end ---------------------------------------------------------------------------------------------
@pytest.fixture
def glue_dir(tmp_path):
    return write_learnable_rte(tmp_path / "glue")


# Hand counts. DCFT kernel 8 (stride 8) per matrix: din/8 + dout/8 + 8^2; tiny-llama per layer
# q, o 48->48: 76 each; k, v 48->24: 73 each; gate, up 48->96 and down 96->48: 82 each -> 544 x 2 layers.
# LoRA r=1 on tiny-gpt2 per layer: c_attn 48+144, attn.c_proj 48+48, c_fc 48+96, mlp.c_proj 96+48 -> 576 x 2.
# BitFit on tiny-gpt2: every bias (c_attn 144, c_proj 48, c_fc 96, c_proj 48, ln_1 48, ln_2 48 per layer, ln_f 48).
# DCFT kernel 8 on tiny-gpt2 per layer: c_attn 48->144: 6+18+64; attn.c_proj 76; c_fc and mlp.c_proj 82 each.
SMOKE = [("tiny-llama", "dcft", 1088), ("tiny-gpt2", "dcft", 2 * (88 + 76 + 82 + 82)), ("tiny-gpt2", "lora", 1152),
         ("tiny-gpt2", "bitfit", 2 * 432 + 48)]


@pytest.mark.parametrize("model,method,count", SMOKE)
def test_tiny_decoder_smoke_run_completes(model, method, count, glue_dir, tmp_path):
    cfg = compose_cfg([f"model={model}", "task=rte", f"method={method}", "kernel=8", "debug=smoke",
                       f"data.glue_dir={glue_dir}", "train.progress=false"])
    rec = run(cfg, tmp_path / "run")
    assert rec["status"] == "completed"
    assert rec["params"]["method"] == count and rec["params"]["head"] == 48 * 2  # score: hidden x labels, no bias
    assert rec["train"]["steps"] == 4


def test_bad_targets_are_rejected_before_data(tmp_path):
    cfg = compose_cfg(["model=tiny-llama", "task=rte", "method=dcft", "kernel=8", "targets=[q_projj]",
                       "data.glue_dir=/nonexistent/glue", "train.progress=false"])
    with pytest.raises(ValueError, match=r"\['q_projj'\] matched no nn.Linear / Conv1D module.*self_attn.q_proj"):
        run(cfg, tmp_path / "run")  # the targets' error, not the missing data


def test_tiny_llama_dcft_learns_the_task_from_its_last_token(glue_dir, tmp_path):
    """Training works through the decoder's last-token head: the label is in sentence 2, which a causal
    model sees only from positions after it (the pooled position itself is pinned by the padded-batch test)."""
    cfg = compose_cfg(["model=tiny-llama", "task=rte", "method=dcft", "kernel=8", "train.max_steps=40",
                       "train.batch_size=16", "train.lr=1e-2", "train.eval_steps=40", "train.max_len=48",
                       f"data.glue_dir={glue_dir}", "train.progress=false"])
    rec = run(cfg, tmp_path / "run")
    assert rec["metrics"]["best"]["validation/accuracy"] > 0.75, rec["metrics"]["best"]  # chance ~0.5


def test_every_target_set_fits_the_decoder_configs_on_the_meta_device():
    """The full-size decoder configs build without memory and every valid set resolves (GPT-2: 3 sets)."""
    from dcft.harness.config import load_group_file
    from dcft.harness.models import build_model

    expected = {"gpt2": {"all": 48, "qkv": 12, "qkvo": 24},
                "llama-3.2-1b": {"all": 112, "qk": 32, "qv": 32, "qkv": 48, "qkvo": 64},
                "qwen2.5-0.5b": {"all": 168, "qk": 48, "qv": 48, "qkv": 72, "qkvo": 96}}
    for name, counts in expected.items():
        model = build_model(load_group_file("model", name), device="meta")
        assert {t: len(resolve_targets(model, t)) for t in TARGET_SETS if t in counts} == counts
        assert model.config.pad_token_id == model.config.eos_token_id  # pad = eos when the config has none
