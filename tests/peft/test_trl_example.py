"""examples/trl_sft_dcft.py: TRL's SFTTrainer with a DcftConfig trains a tiny Llama built from config
on generated examples, offline: only A, B, C move, the loss carries the orthogonal regulariser, and
the saved adapter reloads with peft to the trained model's outputs."""

from __future__ import annotations

import importlib.util
import json

import torch
from peft import PeftModel

from conftest import ROOT
from dcft.methods.dcft.tuner import orthogonal_loss


def load_example():
    spec = importlib.util.spec_from_file_location("trl_sft_dcft", ROOT / "examples" / "trl_sft_dcft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sft_trainer_trains_a_dcft_adapter_on_a_tiny_llama(tmp_path):
    example = load_example()
    model, tokenizer = example.tiny_llama()
    trainer = example.build_trainer(model, tokenizer, example.toy_dataset(16), str(tmp_path), steps=3, batch_size=4,
                                    kernel=8, lr=1e-2)
    peft_model = trainer.model
    assert peft_model.peft_config["default"].peft_type == "DCFT"
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    adapter = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert adapter and all("dcft_" in n for n in adapter)  # TRL wrapped it; only A, B, C train

    # the loss TRL optimises is its SFT loss plus the regulariser of paper eq. 4
    batch = next(iter(trainer.get_train_dataloader()))
    peft_model.train()
    with torch.no_grad():
        total = trainer.compute_loss(peft_model, dict(batch))
        sft = super(type(trainer), trainer).compute_loss(peft_model, dict(batch))
        reg = orthogonal_loss(peft_model)
    assert reg > 0 and torch.allclose(total, sft + reg)

    trainer.train()
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(0 < v < 10 for v in losses)  # logged every step; ln(260) = 5.6 at chance
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == adapter  # every A, B, C moved; nothing of the backbone did

    trainer.save_model(str(tmp_path / "adapter"))
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["kernel"] == 8
    fresh, _ = example.tiny_llama()  # the same seed: the same backbone
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).eval()
    ids = torch.tensor([tokenizer("3 plus 4 is 7.")["input_ids"]])
    peft_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, peft_model(input_ids=ids).logits, rtol=0, atol=0)
