"""Every baseline on tiny DeBERTa and RoBERTa: exactly the intended parameters train (names checked),
all of them move within two optimizer steps of the method's own optimizer and extra loss, nothing
else moves (bit-identical), the head and DeBERTa's pooler train; merge gives the unmerged outputs;
a checkpoint loads into a freshly adapted model; configs compose from conf/method/*.yaml."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import compose_cfg, tiny_model
from dcft.methods import build_method, config_class

FAMILIES = ("tiny-deberta", "tiny-roberta")
HEAD = re.compile(r"^(classifier|pooler)\.")
LAYER = r"layer\.\d+\."

# What each method must train besides the head, as a predicate on parameter names (written here,
# independently of the methods' own code).
EXPECTED = {
    "lora": lambda n: bool(re.search(r"\.lora_[AB]\.default\.weight$", n)),
    "lorafa": lambda n: bool(re.search(r"\.lora_B\.default\.weight$", n)),
    "adalora": lambda n: bool(re.search(r"\.lora_[AEB]\.default$", n)),
    "sora": lambda n: bool(re.search(r"\.sora_(A|B|gate)$", n)),
    "bitfit": lambda n: "bias" in n,
    "hadapter": lambda n: bool(re.search(LAYER + r"(attention\.)?output\.dropout\.adapter\.(down|up)\.(weight|bias)$", n)),
    "padapter": lambda n: bool(re.search(LAYER + r"output\.LayerNorm\.adapter\.(down|up)\.(weight|bias)$", n)),
    "full": lambda n: True,
}
METHODS = tuple(EXPECTED)
MERGEABLE = ("lora", "lorafa", "adalora", "sora", "bitfit", "full")
# Small AdaLoRA schedule for the generic tests: no masking within the first steps.
OVERRIDES = {"adalora": {"tinit": 5, "tfinal": 2, "init_r": 3, "target_r": 1}}
LABELS = torch.tensor([0, 1, 1])


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread. On the shared 2-core machines the default thread pool
    spends most of each op waiting for busy cores (measured: 38-53 s with the default, 14 s with 1)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(name: str, family: str, **kw):
    model = tiny_model(family)
    method = build_method({"name": name, **OVERRIDES.get(name, {}), **kw})
    method.apply(model)
    return model, method


def train(method, model, tokens, steps: int = 2, total: int = 10, lr: float = 1e-2):
    """`steps` optimizer steps as the loop takes them (extra loss, step, after_step, zero_grad)."""
    opt = method.optimizer(model, lr, 0.0)
    method.prepare_training(model, total)
    for step in range(1, steps + 1):
        loss = model(**tokens, labels=LABELS).loss
        extra = method.extra_loss(model)
        if extra is not None:
            loss = loss + extra
        loss.backward()
        opt.step()
        method.after_step(model, step, opt)
        opt.zero_grad(set_to_none=True)
    return opt


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", METHODS)
def test_method_trains_exactly_its_parameters(name, family, tokens):
    """Names, identity at init, two steps (all trainable move, all frozen bit-identical), merge,
    checkpoint round trip: one model per case to keep the suite fast."""
    base = tiny_model(family)
    before = snapshot(base)  # the backbone as loaded
    model, method = make(name, family)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n, _ in model.named_parameters() if HEAD.search(n) or EXPECTED[name](n)}
    assert trainable == expected
    assert {n for n, _ in method.trainable_parameters(model)} == expected
    own = {n for n, _ in method.own_parameters(model)}
    assert own == {n for n in expected if not HEAD.search(n)} and own  # the head is apart
    heads = {n for n, _ in method.head_parameters(model)}
    assert heads and all(HEAD.search(n) for n in heads)
    if family == "tiny-deberta":
        assert {"pooler.dense.weight", "pooler.dense.bias"} <= trainable  # peft issue #2171
    if name == "hadapter":
        assert any("attention.output.dropout.adapter" in n for n in own)
    if name == "padapter":
        assert not any("attention.output" in n for n in own)
    with torch.no_grad():  # LoRA-family updates start at zero (B = 0, E = 0), adapters at identity
        torch.testing.assert_close(model(**tokens).logits, base(**tokens).logits, rtol=0, atol=0)

    applied = snapshot(model)
    train(method, model, tokens)
    after = snapshot(model)
    params = dict(model.named_parameters())
    for n, t in after.items():
        if n in trainable:
            assert not torch.equal(t, applied[n]), f"{n} did not change"
        else:
            assert torch.equal(t, applied[n]), f"frozen {n} changed"
    # the backbone as loaded: unchanged unless trained (peft moves W to `<module>.base_layer.weight`)
    for n, t in after.items():
        src = n.replace(".base_layer.", ".")
        if src in before and n not in trainable:
            assert torch.equal(t, before[src]), f"backbone {n} changed"
    assert all(params[n].grad is None for n in trainable)  # zero_grad(set_to_none) reached them all

    with torch.no_grad():
        ref = model(**tokens).logits
    if name in MERGEABLE:
        with torch.no_grad():
            method.merge(model)
            merged = model(**tokens).logits
            method.unmerge(model)
            back = model(**tokens).logits
        torch.testing.assert_close(merged, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(back, ref, rtol=1e-5, atol=1e-5)
        for n, t in snapshot(model).items():
            torch.testing.assert_close(t, after[n], rtol=1e-5, atol=1e-6)
        model.load_state_dict(after)  # exact weights again for the checkpoint check

    state = method.state_dict(model)
    torch.manual_seed(1234)  # another draw for every random init (LoRA-FA's frozen A included)
    fresh, fresh_method = make(name, family)
    fresh_method.load_state_dict(fresh, state)
    with torch.no_grad():
        torch.testing.assert_close(fresh(**tokens).logits, ref, rtol=0, atol=0)


@pytest.mark.parametrize("name", ("hadapter", "padapter"))
def test_adapters_cannot_merge(name):
    model, method = make(name, "tiny-deberta")
    assert not method.can_merge
    with pytest.raises(NotImplementedError):
        method.merge(model)


@pytest.mark.parametrize("name", METHODS)
def test_configs_compose_from_yaml(name):
    cfg = compose_cfg([f"method={name}", "model=tiny-deberta", "targets=qv"])
    method = build_method(cfg.method)
    schema = config_class(name)
    assert isinstance(method.cfg, schema)
    fields = list(schema.__dataclass_fields__)
    assert fields[0] == "name" and method.cfg.name == name
    if "targets" in fields:
        assert method.cfg.targets == "qv"  # the top-level key reaches the method
    if name in ("hadapter", "padapter"):  # one module, two schemas (the class's `config_class`)
        assert type(method.cfg).__name__ == {"hadapter": "HAdapterConfig", "padapter": "PAdapterConfig"}[name]
        assert (method.cfg.bottleneck, method.cfg.activation) == {"hadapter": (8, "silu"), "padapter": (16, "relu")}[name]


def test_targets_are_exact_module_names():
    """`output.dense` never catches `attention.output.dense`, nor anything the pooler."""
    model, method = make("lora", "tiny-deberta", targets="qv")
    wrapped = {n.rsplit(".lora_", 1)[0] for n, _ in method.own_parameters(model)}
    assert wrapped == {f"deberta.encoder.layer.{i}.attention.self.{p}_proj" for i in (0, 1) for p in ("query", "value")}
    with pytest.raises(ValueError, match="target set"):
        make("lora", "tiny-deberta", targets="qx")
    with pytest.raises(ValueError, match="variant"):
        make("lorafa", "tiny-deberta", variant="nope")
