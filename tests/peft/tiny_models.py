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


class Block(torch.nn.Module):
    """One numbered block of `MLP`: `proj` (an nn.Linear, or GPT-2's Conv1D with `conv1d`) and a ReLU."""

    def __init__(self, din: int, dout: int, conv1d: bool = False):
        from transformers.pytorch_utils import Conv1D

        super().__init__()
        self.proj = Conv1D(dout, din) if conv1d else torch.nn.Linear(din, dout)
        if conv1d:
            torch.nn.init.normal_(self.proj.bias, std=0.1)  # transformers starts it at 0; tests need it to matter

    def forward(self, x):
        return torch.relu(self.proj(x))


class MLP(torch.nn.Module):
    """A custom (non-transformers) model as peft's own tests use: three numbered Linear blocks
    (`layers.{0,1,2}.proj`: 16 -> 32 -> 32 -> 24; GPT-2 Conv1D layers with `conv1d`) and a Linear head
    (24 -> 8). Kernel 8 fits every block (stride 8); kernel 16 does not fit `layers.2.proj` (24 outputs)."""

    def __init__(self, seed: int = 0, conv1d: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.layers = torch.nn.ModuleList([Block(16, 32, conv1d), Block(32, 32, conv1d), Block(32, 24, conv1d)])
        self.head = torch.nn.Linear(24, 8)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class ConvModel(torch.nn.Module):
    """A custom model with GPT-2's transformers `Conv1D` (weight din x dout) between an embedding and
    a Linear head: ids (batch, seq) -> embedding 16 -> `conv` 16 -> 32 -> `lin` 32 -> 8."""

    def __init__(self, seed: int = 0):
        from transformers.pytorch_utils import Conv1D

        super().__init__()
        torch.manual_seed(seed)
        self.emb = torch.nn.Embedding(100, 16)
        self.conv = Conv1D(32, 16)  # nf = 32 outputs, nx = 16 inputs
        torch.nn.init.normal_(self.conv.bias, std=0.1)  # transformers starts it at 0; tests need it to matter
        self.lin = torch.nn.Linear(32, 8)

    def forward(self, x):
        return self.lin(torch.relu(self.conv(self.emb(x))))


CUSTOM = {"linear": MLP, "conv1d": ConvModel}  # the two layer kinds DCFT adapts, as custom models
CUSTOM_TARGETS = {"linear": ["proj"], "conv1d": ["conv"]}


def custom_input(kind: str, rows: int = 6, seed: int = 0) -> torch.Tensor:
    """A batch for `CUSTOM[kind]`: features (rows x 16) for the MLP, ids (rows x 5) for ConvModel."""
    g = torch.Generator().manual_seed(seed)
    if kind == "linear":
        return torch.randn(rows, 16, generator=g)
    return torch.randint(0, 100, (rows, 5), generator=g)
