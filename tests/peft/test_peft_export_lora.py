"""A DCFT adapter exported as a standard peft LoRA adapter (`dcft.export_lora`, `python -m
dcft.harness.export --to-lora`): plain peft, in a fresh process that cannot import dcft, reproduces the
DCFT model's outputs to float32 precision on tiny Llama, GPT-2 (Conv1D) and DeBERTa models; the
LoRA's rank and size follow k*d and the layer sizes; a harness run directory exports too."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
import transformers as tf
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file

import dcft
from conftest import ROOT, compose_cfg, model_cfg
from dcft.harness.export import export_lora, main
from dcft.methods.dcft.tuner import DcftConfig, to_lora
from tiny_models import COMMON, build

FRESH_PROCESS = r"""
import json, sys
sys.modules["dcft"] = None  # `import dcft` fails here: only plain peft and transformers may be used
import torch, transformers
from peft import PeftModel
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
assert "DCFT" not in PEFT_TYPE_TO_CONFIG_MAPPING
for job in json.loads(sys.argv[1]):
    base = getattr(transformers, job["cls"]).from_pretrained(job["base"]).eval()
    model = PeftModel.from_pretrained(base, job["lora"]).eval()
    assert model.peft_config["default"].peft_type == "LORA"
    with torch.no_grad():
        torch.save(model(input_ids=torch.tensor(job["ids"])).logits, job["out"])
print("ok")
"""

# Adapted (din, dout) per block, written out from the architectures (hidden 32, FFN 64; Llama's
# k_proj / v_proj 32 -> 16 with 2 KV heads; GPT-2's c_attn 32 -> 96 and FFN 4 x hidden).
LLAMA = {"q_proj": (32, 32), "k_proj": (32, 16), "v_proj": (32, 16), "o_proj": (32, 32),
         "gate_proj": (32, 64), "up_proj": (32, 64), "down_proj": (64, 32)}
GPT2 = {"attn.c_attn": (32, 96), "attn.c_proj": (32, 32), "mlp.c_fc": (32, 128), "mlp.c_proj": (128, 32)}
DEBERTA = {"query_proj": (32, 32), "key_proj": (32, 32), "value_proj": (32, 32), "attention.output.dense": (32, 32),
           "intermediate.dense": (32, 64), "output.dense": (64, 32)}


def dcft_count(sizes, kernel, stride, rank, pattern=None):
    """k*din' + k*dout' + d^2 per adapted matrix (paper Sec. 3), 2 blocks."""
    total = 0
    for name, (din, dout) in sizes.items():
        d, s = (pattern or {}).get(name, (kernel, stride))
        total += rank * ((din - d) // s + 1) + rank * ((dout - d) // s + 1) + d * d
    return 2 * total


def lora_count(sizes, rank, pattern=None):
    """rank * (din + dout) per adapted matrix, 2 blocks."""
    return 2 * sum((pattern or {}).get(name, rank) * (din + dout) for name, (din, dout) in sizes.items())


def perturbed(model):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_exported_lora_reproduces_dcft_in_a_process_without_dcft(tmp_path, capsys):
    ids = torch.randint(3, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    llama = tf.LlamaForCausalLM(tf.LlamaConfig(**COMMON, num_key_value_heads=2, pad_token_id=0, bos_token_id=1,
                                               eos_token_id=1))
    torch.manual_seed(0)
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=100,
                                            bos_token_id=1, eos_token_id=1))
    jobs, expected, bases = [], {}, {"llama": llama, "gpt2": gpt2, "deberta": build("deberta-v2")}
    for name, base in bases.items():
        base.save_pretrained(tmp_path / f"{name}-base")

    # Llama: from the model in memory; stride < kernel, rank 2, and a kernel pattern (a LoRA rank_pattern)
    model = perturbed(get_peft_model(tf.LlamaForCausalLM.from_pretrained(tmp_path / "llama-base"), DcftConfig(
        kernel=8, stride=4, rank=2, kernel_pattern={"down_proj": 4}, task_type="CAUSAL_LM")))
    result = dcft.export_lora(model, tmp_path / "llama-lora")
    expected["llama"] = logits(model, ids)
    assert (result.rank, result.dcft, result.lora, result.shared) == (
        16, dcft_count(LLAMA, 8, 4, 2, {"down_proj": (4, 4)}), lora_count(LLAMA, 16, {"down_proj": 8}), 0)

    # GPT-2 (Conv1D), every bias trained: the command line on the saved DCFT adapter, whose config
    # names the base model directory (PeftModel records it)
    model = perturbed(get_peft_model(tf.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2-base"),
                                     DcftConfig(kernel=8, bias="all", task_type="CAUSAL_LM")))
    model.save_pretrained(tmp_path / "gpt2-dcft")
    assert main(["--to-lora", str(tmp_path / "gpt2-dcft"), str(tmp_path / "gpt2-lora")]) == 0
    printed = capsys.readouterr().out
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    assert (f"DCFT adapter: {dcft_count(GPT2, 8, 8, 1):,} parameters -> LoRA of rank 8: "
            f"{lora_count(GPT2, 8):,} parameters") in printed and f"the same in both: {biases:,}" in printed
    expected["gpt2"] = logits(model, ids)

    # DeBERTa for classification: the adapter directory with the base model passed (its config names none),
    # the adapted layers' biases trained, classifier and pooler carried over
    model = perturbed(get_peft_model(build("deberta-v2"), DcftConfig(kernel=8, bias="dcft_only", task_type="SEQ_CLS",
                                                                     modules_to_save=["pooler"])))
    model.save_pretrained(tmp_path / "deberta-dcft")
    with pytest.raises(ValueError, match="does not name its base model"):
        export_lora(tmp_path / "deberta-dcft", tmp_path / "deberta-lora")
    export_lora(tmp_path / "deberta-dcft", tmp_path / "deberta-lora", base_model=str(tmp_path / "deberta-base"))
    expected["deberta"] = logits(model, ids)

    classes = {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel", "deberta": "DebertaV2ForSequenceClassification"}
    for name in bases:
        jobs.append({"cls": classes[name], "base": str(tmp_path / f"{name}-base"), "lora": str(tmp_path / f"{name}-lora"),
                     "ids": ids.tolist(), "out": str(tmp_path / f"{name}.pt")})
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    for name, base in bases.items():
        got = torch.load(tmp_path / f"{name}.pt")
        assert (expected[name] - logits(base.eval(), ids)).abs().max() > 0.05  # the adapter matters
        torch.testing.assert_close(got, expected[name], rtol=0, atol=1e-5)  # float32 rounding only

    configs = {n: json.loads((tmp_path / f"{n}-lora" / "adapter_config.json").read_text()) for n in bases}
    assert {n: (c["peft_type"], c["r"], c["lora_alpha"], c["fan_in_fan_out"], c["bias"]) for n, c in configs.items()} == {
        "llama": ("LORA", 16, 16, False, "none"), "gpt2": ("LORA", 8, 8, True, "all"),
        "deberta": ("LORA", 8, 8, False, "lora_only")}
    assert set(configs["llama"]["rank_pattern"].values()) == {8} and len(configs["llama"]["rank_pattern"]) == 2
    assert set(configs["deberta"]["modules_to_save"]) == {"pooler", "classifier", "score"}
    for name in bases:
        assert not any("dcft_" in k for k in load_file(str(tmp_path / f"{name}-lora" / "adapter_model.safetensors")))


def test_export_errors_name_the_problem(tmp_path):
    model = get_peft_model(build("bert"), DcftConfig(kernel=8, task_type="SEQ_CLS"))
    model.save_pretrained(tmp_path / "dcft")
    with pytest.raises(FileNotFoundError, match="neither a peft adapter directory"):
        export_lora(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="has no module 'bert.encoder.layer.0.attention.output.dense'"):
        export_lora(tmp_path / "dcft", tmp_path / "out", base_model=tf.GPT2Model(tf.GPT2Config(n_embd=32, n_layer=1,
                                                                                               n_head=4)))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not an adapter directory"):
        export_lora(model, tmp_path / "notes")
    export_lora(model, tmp_path / "lora")
    with pytest.raises(ValueError, match="holds a LORA adapter, not a DCFT one"):
        export_lora(tmp_path / "lora", tmp_path / "again")
    with pytest.raises(SystemExit) as e:
        main(["--to-lora", str(tmp_path / "lora"), str(tmp_path / "again")])
    assert e.value.code == 2


def test_a_run_directory_exports_its_best_adapter(tmp_path):
    """A harness run on tiny GPT-2 (Conv1D): `--to-lora RUN OUT` rebuilds the model from result.json on
    the meta device and writes a LoRA that plain peft loads onto the run's backbone, reproducing the
    run's saved DCFT model (`load_run_adapter`)."""
    from omegaconf import OmegaConf

    from dcft.report import results
    from dcft.harness.experiment import run
    from dcft.harness.export import load_run_adapter
    from dcft.harness.models import get_model
    from test_experiment import TINY_RUN, write_learnable_rte

    glue = write_learnable_rte(tmp_path / "glue", n_train=32, n_dev=16)
    over = [o for o in TINY_RUN if not o.startswith(("model=", "train.max_steps", "train.eval_steps"))]
    run(compose_cfg(over + ["model=tiny-gpt2", "method=dcft", "kernel=8", "train.max_steps=4", "train.eval_steps=2",
                            f"data.glue_dir={glue}"]), tmp_path / "run", choices={"method": "dcft"})
    assert main(["--to-lora", str(tmp_path / "run"), str(tmp_path / "lora")]) == 0
    assert json.loads((tmp_path / "lora" / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    dcft_model, _ = load_run_adapter(tmp_path / "run")
    cfg = OmegaConf.create(results.read_result(tmp_path / "run")["config"])
    base = get_model(cfg.model, head="classification", num_labels=2, cls_dropout=cfg.train.cls_dropout, seed=cfg.seed)
    lora = PeftModel.from_pretrained(base, str(tmp_path / "lora")).eval()
    ids = torch.randint(4, 260, (3, 11), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits(lora, ids), logits(dcft_model, ids), rtol=0, atol=1e-5)


def test_readme_states_the_size_trade_counted_on_the_meta_device():
    """README's table of a DCFT kernel-8 adapter and its LoRA of rank k*d, counted here on the meta device
    (`to_lora` of a peft DCFT model built without weights) and checked against the paper's own count."""
    from dcft.harness.models import build_model

    section = (ROOT / "README.md").read_text().split("## Using DCFT in your own code", 1)[1].split("\n## ", 1)[0]
    by_hand = {  # (paper's count for DeBERTaV3-base k8, dcft-method.md; LoRA rank 8 x (din + dout) per matrix)
        "deberta-v3-base": (25_344, 12 * 8 * (4 * (768 + 768) + 2 * (768 + 3072))),
        "minilm": (6 * (4 * (48 + 48 + 64) + 2 * (48 + 192 + 64)), 6 * 8 * (4 * (384 + 384) + 2 * (384 + 1536))),
    }
    for name, (n_hand, m_hand) in by_hand.items():
        meta = build_model(model_cfg(name), device="meta")
        model = get_peft_model(meta, DcftConfig(kernel=8))
        n = sum(p.numel() for k, p in model.named_parameters() if "dcft_" in k)
        config, state = to_lora(model)
        m = sum(v.numel() for k, v in state.items() if ".lora_" in k)
        row = re.search(rf"\| {re.escape(name)} \| ([\d,]+) \| (\d+) \| ([\d,]+) \|", section)
        assert row, f"README has no size row for {name}"
        assert (int(row[1].replace(",", "")), int(row[2]), int(row[3].replace(",", ""))) == (n, config.r, m)
        assert (n, m) == (n_hand, m_hand)
