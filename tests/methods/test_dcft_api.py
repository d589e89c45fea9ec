"""The public DCFT API (`dcft.apply_dcft`, `count_parameters`, `merge_dcft`, `save_adapter`,
`load_adapter`) and the paper's "#Params" counted on the meta device."""

from __future__ import annotations

import json

import pytest
import torch

import dcft
from conftest import TINY_MODELS, tiny_model
from dcft.methods.base import ParamCount
from dcft.methods.dcft import DCFT, dcft_layers
from dcft.methods.dcft.api import CONFIG_FILE, WEIGHTS_FILE


def test_top_level_exports():
    assert dcft.__version__ == "0.1.0"
    for name in ("apply_dcft", "count_parameters", "merge_dcft", "unmerge_dcft", "save_adapter", "load_adapter"):
        assert callable(getattr(dcft, name)), name
    with pytest.raises(AttributeError):
        dcft.not_an_api


def _train_a_little(model, method, seed=5):
    """Move A, B, C and the head away from their initial values (as training would)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for _, p in method.trainable_parameters(model):
            p.add_(torch.randn_like(p) * 0.3)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_save_load_round_trip_gives_identical_outputs(name, tokens, tmp_path):
    model = tiny_model(name)
    method = dcft.apply_dcft(model, kernel=8, stride=4, reg_orth_coef=0.3)
    _train_a_little(model, method)
    with torch.no_grad():
        y = model(**tokens).logits
    out = dcft.save_adapter(model, method, tmp_path / "adapter")
    size = (out / WEIGHTS_FILE).stat().st_size
    n_floats = sum(p.numel() for _, p in method.trainable_parameters(model))
    assert size < 4 * n_floats + 16_384  # A, B, C and head as float32, plus the safetensors header
    print(f"\n{name}: {WEIGHTS_FILE} {size} bytes ({n_floats} floats incl. head), "
          f"{CONFIG_FILE} {(out / CONFIG_FILE).stat().st_size} bytes")
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert meta["config"]["kernel"] == 8 and meta["config"]["stride"] == 4 and meta["format_version"] == 1
    assert meta["target_modules"] == [n for n, _ in dcft_layers(model)] and meta["include_head"] is True

    fresh = tiny_model(name)  # the same base weights, a fresh random head
    loaded = dcft.load_adapter(fresh, out)
    assert isinstance(loaded, DCFT) and loaded.cfg == method.cfg
    with torch.no_grad():
        torch.testing.assert_close(fresh(**tokens).logits, y, rtol=0, atol=0)
    assert dcft.count_parameters(fresh) == method.count(model)
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == \
        {n for n, p in model.named_parameters() if p.requires_grad}


def test_save_without_head(tokens, tmp_path):
    model = tiny_model("tiny-deberta")
    method = dcft.apply_dcft(model, kernel=8)
    _train_a_little(model, method)
    out = dcft.save_adapter(model, method, tmp_path / "a", include_head=False)
    from safetensors.torch import load_file

    keys = set(load_file(str(out / WEIGHTS_FILE)))
    assert keys == {n for n, _ in method.own_parameters(model)}
    size = (out / WEIGHTS_FILE).stat().st_size
    assert size < 4 * method.count(model).method + 16_384
    print(f"\ntiny-deberta kernel=8 adapter without head: {size} bytes")
    fresh = tiny_model("tiny-deberta", seed=0)
    head = {n: p.detach().clone() for n, p in DCFT().head_parameters(fresh)}
    dcft.load_adapter(fresh, out)
    for n, p in DCFT().head_parameters(fresh):  # head untouched: the fresh model's own
        assert torch.equal(p, head[n])
    for (n, p), (n2, q) in zip(method.own_parameters(model), DCFT().own_parameters(fresh)):
        assert n == n2 and torch.equal(p, q)


def test_load_errors_leave_the_model_untouched(tmp_path):
    model = tiny_model("tiny-roberta")
    method = dcft.apply_dcft(model, kernel=8)
    out = dcft.save_adapter(model, method, tmp_path / "ok")

    with pytest.raises(FileNotFoundError, match="does not exist"):
        dcft.load_adapter(tiny_model("tiny-roberta"), tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"has no {CONFIG_FILE}"):
        dcft.load_adapter(tiny_model("tiny-roberta"), tmp_path / "empty")

    # a config edited to another kernel: the tensors no longer fit
    meta = json.loads((out / CONFIG_FILE).read_text())
    meta["config"]["kernel"] = 4
    (out / CONFIG_FILE).write_text(json.dumps(meta))
    fresh = tiny_model("tiny-roberta")
    with pytest.raises(ValueError, match=r"tensor '.*\.A' has shape \(1, 6\), this model needs \(1, 12\) with kernel=4"):
        dcft.load_adapter(fresh, out)
    assert not dcft_layers(fresh)

    # another model family: other module names
    meta["config"]["kernel"] = 8
    (out / CONFIG_FILE).write_text(json.dumps(meta))
    fresh = tiny_model("tiny-deberta")
    with pytest.raises(ValueError, match="saved for other modules"):
        dcft.load_adapter(fresh, out)
    assert not dcft_layers(fresh)

    # a head for another number of labels
    fresh = tiny_model("tiny-roberta", num_labels=3)
    with pytest.raises(ValueError, match=r"tensor 'classifier\..*' has shape .* another number of labels"):
        dcft.load_adapter(fresh, out)
    assert not dcft_layers(fresh)

    # an already adapted model
    with pytest.raises(ValueError, match="already has DCFT layers"):
        dcft.load_adapter(model, out)

    # not a DCFT config / a config with an unknown key
    (out / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        dcft.load_adapter(tiny_model("tiny-roberta"), out)
    meta["config"]["kernal"] = 8
    (out / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="kernal"):
        dcft.load_adapter(tiny_model("tiny-roberta"), out)


def test_save_errors(tmp_path):
    model = tiny_model("tiny-bert")
    with pytest.raises(ValueError, match="no DCFT layers"):
        dcft.save_adapter(model, DCFT(), tmp_path)
    from dcft.harness.models import build_model
    from conftest import model_cfg

    meta_model = build_model(model_cfg("tiny-bert"), device="meta")
    method = dcft.apply_dcft(meta_model, kernel=8)
    with pytest.raises(ValueError, match="meta device"):
        dcft.save_adapter(meta_model, method, tmp_path)


def test_merge_dcft_functions(tokens):
    model = tiny_model("tiny-deberta")
    method = dcft.apply_dcft(model, kernel=4, stride=2)
    _train_a_little(model, method)
    with torch.no_grad():
        y = model(**tokens).logits
        dcft.merge_dcft(model, unload=False)
        assert all(m.merged for _, m in dcft_layers(model))
        torch.testing.assert_close(model(**tokens).logits, y, rtol=1e-5, atol=1e-5)
        dcft.unmerge_dcft(model)
        assert not any(m.merged for _, m in dcft_layers(model))
        torch.testing.assert_close(model(**tokens).logits, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny-deberta", "tiny-bert", "tiny-gpt2", "tiny-llama"])
def test_merge_dcft_leaves_a_plain_model_that_saves_and_reloads(name, tokens, tmp_path):
    """The issue's bug: merged wrappers stayed, so save_pretrained wrote `query.base.weight` and
    from_pretrained re-initialised `query.weight` (outputs off by 0.04 here)."""
    import transformers

    model = tiny_model(name).eval()
    method = dcft.apply_dcft(model, kernel=4, stride=2)
    _train_a_little(model, method)
    with torch.no_grad():
        y = model(**tokens).logits
    adapted = {n: type(m.base) for n, m in dcft_layers(model)}
    merged = dcft.merge_dcft(model)
    assert merged is model and not dcft_layers(model)
    assert {n: type(model.get_submodule(n)) for n in adapted} == adapted  # nn.Linear, or GPT-2's Conv1D
    with torch.no_grad():
        y_merged = model(**tokens).logits
    torch.testing.assert_close(y_merged, y, rtol=1e-4, atol=1e-4)  # merging rounds in float32
    model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**tokens).logits, y_merged, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no DCFT layers to unmerge"):
        dcft.unmerge_dcft(model)


def test_apply_dcft_rejects_bad_values_before_touching_the_model():
    model = tiny_model("tiny-bert")
    with pytest.raises(ValueError, match="method.init='zeros'"):
        dcft.apply_dcft(model, init="zeros")
    with pytest.raises(ValueError, match="targets='qkvf'"):
        dcft.apply_dcft(model, targets="qkvf")
    with pytest.raises(TypeError):
        dcft.apply_dcft(model, kernal=8)
    assert not dcft_layers(model) and all(p.requires_grad for p in model.parameters())


# --- the paper's #Params (dcft-method.md table), counted on the meta device ---------------------------
PAPER_COUNTS = [
    ("deberta-v3-base", 2, None, "all", 83_232), ("deberta-v3-base", 4, None, "all", 42_624),
    ("deberta-v3-base", 6, None, "all", 30_240), ("deberta-v3-base", 8, None, "all", 25_344),
    ("deberta-v3-base", 12, None, "all", 24_192), ("deberta-v3-base", 8, 1, "all", 169_488),
    ("deberta-v3-base", 8, 2, "all", 87_120), ("deberta-v3-base", 8, 4, "all", 45_936),
    ("deberta-v3-base", 8, None, "qk", 6_144), ("deberta-v3-base", 8, None, "qv", 6_144),
    ("deberta-v3-base", 8, None, "qkv", 9_216), ("deberta-v3-base", 8, None, "qkvo", 12_288),
    ("roberta-large", 8, None, "all", 64_512), ("roberta-large", 2, None, "all", 221_760),
    ("deberta-v2-xxlarge", 8, None, "all", 184_320),
]


@pytest.mark.parametrize("model_name,kernel,stride,targets,expected", PAPER_COUNTS)
def test_paper_counts_on_meta_device(model_name, kernel, stride, targets, expected):
    from dcft.harness.config import load_group_file
    from dcft.harness.models import build_model

    model = build_model(load_group_file("model", model_name), device="meta")
    method = dcft.apply_dcft(model, targets=targets, kernel=kernel, stride=stride)
    counts = dcft.count_parameters(model)
    assert isinstance(counts, ParamCount) and counts == method.count(model)
    assert counts.method == expected
    assert all(p.is_meta for _, p in method.own_parameters(model))  # nothing materialised
