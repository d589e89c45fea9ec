"""Supervised fine-tuning of a decoder with TRL's `SFTTrainer` and a DCFT adapter (a peft method).

    python examples/trl_sft_dcft.py                      # tiny Llama built from its config, offline, seconds on a CPU
    python examples/trl_sft_dcft.py --model Qwen/Qwen2.5-0.5B --steps 200 --out qwen-dcft

`SFTTrainer(..., peft_config=DcftConfig(...))` wraps the model with `get_peft_model` as it does for LoRA:
the backbone is frozen and only DCFT's A, B, C (paper Sec. 3) train. `DcftSFTTrainer` adds DCFT's
orthogonal regulariser (paper eq. 4, gamma = `reg_orth_coef`) to the training loss; the rest is TRL's.
The adapter is saved in peft's format (`PeftModel.from_pretrained(base, out)` after `import dcft`), and
`python -m dcft.harness.export --to-lora OUT LORA_OUT` turns it into a plain LoRA adapter for LoRA servers.
Without `--model` the data are generated sentences ("7 plus 5 is 12") and the tokenizer is the offline
byte-level one of `dcft.harness.models`; with `--model`, the checkpoint's own tokenizer (same generated data).
"""

from __future__ import annotations

import argparse
import random

import dcft  # noqa: F401  (makes DCFT a peft method)
from dcft.methods.dcft.tuner import DcftConfig, orthogonal_loss


def toy_dataset(n: int, seed: int = 0):
    """`n` generated training texts, a `datasets.Dataset` with a "text" column."""
    from datasets import Dataset

    rng = random.Random(seed)
    pairs = [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(n)]
    return Dataset.from_dict({"text": [f"{a} plus {b} is {a + b}." for a, b in pairs]})


def tiny_llama(seed: int = 0):
    """(model, tokenizer): a 2-layer Llama (hidden 48) built from its config, random weights, and the
    byte-level tokenizer whose ids it uses ([PAD] 0, [CLS] 1 as bos, [SEP] 2 as eos)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from dcft.harness.models import byte_tokenizer

    tokenizer = byte_tokenizer()
    tokenizer.bos_token, tokenizer.eos_token = "[CLS]", "[SEP]"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tokenizer


def pretrained(name: str):
    """(model, tokenizer) of a causal LM checkpoint (Hub id or local directory)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(name), tokenizer


def trainer_class():
    """`SFTTrainer` with DCFT's orthogonal regulariser added to the training loss (TRL is imported here)."""
    from trl import SFTTrainer

    class DcftSFTTrainer(SFTTrainer):
        """TRL's SFT loss + gamma * mean of ||A A^T - I||_F and ||B^T B - I||_F (paper eq. 4) while training."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
            reg = orthogonal_loss(self.model) if model.training else None  # self.model: the PeftModel itself
            if reg is None:
                return result
            return (result[0] + reg, result[1]) if return_outputs else result + reg

    return DcftSFTTrainer


def build_trainer(model, tokenizer, dataset, out: str, steps: int = 30, kernel: int = 8, lr: float = 5e-3,
                  batch_size: int = 8, seed: int = 0):
    """A `DcftSFTTrainer` for `model` with a DCFT adapter of `kernel` (stride = kernel, the paper's
    default; default targets of the model type, e.g. Llama's q, k, v, o, gate, up, down projections)."""
    import torch
    from trl import SFTConfig

    gpu = torch.cuda.is_available()  # on a CPU: float32 (TRL's default bf16 autocast is slow there)
    args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr,
                     lr_scheduler_type="constant", logging_steps=max(1, steps // 6), save_strategy="no", report_to=[],
                     seed=seed, max_length=64, use_cpu=not gpu, bf16=None if gpu else False)
    peft_config = DcftConfig(kernel=kernel, task_type="CAUSAL_LM")
    return trainer_class()(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                           peft_config=peft_config)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="causal LM (Hub id or local directory); default: tiny Llama")
    parser.add_argument("--out", default="sft-dcft", help="output directory (the adapter goes to OUT/adapter)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps")
    parser.add_argument("--kernel", type=int, default=8, help="DCFT kernel d (= stride)")
    parser.add_argument("--lr", type=float, default=5e-3, help="learning rate")
    parser.add_argument("--examples", type=int, default=64, help="generated training texts")
    args = parser.parse_args(argv)
    model, tokenizer = pretrained(args.model) if args.model else tiny_llama()
    trainer = build_trainer(model, tokenizer, toy_dataset(args.examples), args.out, steps=args.steps,
                            kernel=args.kernel, lr=args.lr)
    trainer.train()
    trainer.save_model(f"{args.out}/adapter")  # adapter_config.json (peft_type DCFT) + adapter_model.safetensors
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; adapter in {args.out}/adapter")
    return trainer


if __name__ == "__main__":
    main()
