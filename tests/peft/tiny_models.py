"""Tiny sequence-classification models of five families, built from transformers' config classes
(hidden 32, 2 layers, random weights, no download), for the peft test matrix."""

from __future__ import annotations

import torch

FAMILIES = ("bert", "roberta", "deberta-v2", "gpt2", "llama")
COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100)


def build(family: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A fresh tiny model in eval mode; the same seed gives the same weights."""
    import transformers as tf

    if family == "bert":
        cls, cfg = tf.BertForSequenceClassification, tf.BertConfig(**COMMON, max_position_embeddings=64)
    elif family == "roberta":
        cls, cfg = tf.RobertaForSequenceClassification, tf.RobertaConfig(**COMMON, max_position_embeddings=72)
    elif family == "deberta-v2":
        cls = tf.DebertaV2ForSequenceClassification
        cfg = tf.DebertaV2Config(**COMMON, max_position_embeddings=64, relative_attention=True,
                                 pos_att_type=["p2c", "c2p"], position_buckets=16, pooler_hidden_size=32)
    elif family == "gpt2":
        cls = tf.GPT2ForSequenceClassification
        cfg = tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=100, pad_token_id=0,
                            bos_token_id=1, eos_token_id=1)
    elif family == "llama":
        cls = tf.LlamaForSequenceClassification
        cfg = tf.LlamaConfig(**COMMON, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    else:
        raise ValueError(family)
    cfg.num_labels = 2
    torch.manual_seed(seed)
    return cls(cfg).to(dtype).eval()


def batch(seed: int = 0) -> dict:
    """Token ids (no padding id 0 inside, so last-token pooling sees the full rows) and a mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (3, 9), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
