"""An oracle for `dcft.harness.train.fit`: a plain reference loop written here, run beside `fit` on the same
tiny model (dropout off) and the same batches, must end with the same trained weights (to 1e-6).

The reference loop is the textbook one, written from the paper's setting (HF Trainer: AdamW, linear
warm-up then linear decay, weight decay except on biases and LayerNorm weights, gradient clipping)
and nothing of `dcft.harness.train`: task loss + the method's extra loss, backward, clip the global norm of
all trainable gradients, set the scheduled lr by hand, AdamW step over parameter groups built here
from module types and names, then zero the gradients. Settings make every piece count: warm-up on,
weight decay 0.1, a `max_grad_norm` that binds at every step (asserted), several epochs.

Bugs this catches: a wrong warm-up length or decay shape, weight decay on biases or on SoRA's gates,
clipping disabled or applied to the wrong tensors, the extra loss not added, `zero_grad` missing,
the scheduler stepped per micro-batch, a SoRA gate step without the proximal threshold or at the
wrong learning rate.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dcft.methods import build_method
from fit_probe import (RecordingTask, assert_deterministic_in_train_mode, clone, dropout_free_model,
                       hf_linear_factor, run_fit, task_data, train_cfg)

N_TRAIN, BATCH = 12, 4  # 3 batches per epoch
MAX_STEPS = 6  # two epochs
WARMUP = 2  # ceil(warmup_ratio 0.3 x 6 steps) = ceil(1.8)
MAX_NORM = 0.05  # small enough to bind at every step (asserted)
TRAIN = ("train.batch_size=4", "train.max_steps=6", "train.warmup_ratio=0.3", "train.weight_decay=0.1",
         "train.max_grad_norm=0.05", "train.lr=0.02")


def no_decay(model: nn.Module, name: str) -> bool:
    """Biases and LayerNorm weights (HF Trainer's rule), decided from module types, not name lists."""
    module_name, _, leaf = name.rpartition(".")
    return leaf == "bias" or isinstance(model.get_submodule(module_name), nn.LayerNorm)


def reference_loop(model: nn.Module, batches: list[dict], tcfg, extra_loss, special=None, after_step=None,
                   grad_accum: int = 1, total: int = MAX_STEPS, warmup: int = WARMUP) -> list[float]:
    """Train `model` on `batches` the textbook way; returns the gradient norms before clipping.
    `special(name)` may return a dict of group options for a parameter (SoRA's gates)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not no_decay(model, n) and not (special and special(n))]
    plain = [p for n, p in named if no_decay(model, n) and not (special and special(n))]
    groups = [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    if special:
        extra_groups: dict[tuple, list] = {}
        for n, p in named:
            if special(n):
                extra_groups.setdefault(tuple(sorted(special(n).items())), []).append(p)
        groups += [{"params": ps, **dict(opts)} for opts, ps in extra_groups.items()]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=tcfg.lr, betas=(tcfg.adam_beta1, tcfg.adam_beta2), eps=tcfg.adam_eps)
    base_lr = [g["lr"] for g in opt.param_groups]
    params = [p for _, p in named]
    norms = []
    assert len(batches) == total * grad_accum
    for k in range(total):
        for g, lr in zip(opt.param_groups, base_lr):
            g["lr"] = lr * hf_linear_factor(k, warmup, total)
        for batch in batches[k * grad_accum:(k + 1) * grad_accum]:
            loss = model(**batch).loss
            extra = extra_loss(model)
            if extra is not None:
                loss = loss + extra
            (loss / grad_accum).backward()
        norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))
        norms.append(norm)
        coef = min(1.0, tcfg.max_grad_norm / (norm + 1e-6))
        for p in params:
            if p.grad is not None:
                p.grad.mul_(coef)
        opt.step()
        if after_step is not None:
            after_step(opt)
        for p in params:
            p.grad = None
    return norms


def check_batches(batches: list[dict], n_train: int = N_TRAIN, batch: int = BATCH) -> None:
    """`fit` saw whole epochs: every training example exactly once per epoch."""
    per_epoch = n_train // batch
    assert len(batches) % per_epoch == 0
    for e in range(len(batches) // per_epoch):
        ids = torch.cat([b["input_ids"] for b in batches[e * per_epoch:(e + 1) * per_epoch]])
        assert ids.shape[0] == n_train
        assert len({tuple(r.tolist()) for r in ids}) == n_train


def compare(fit_model: nn.Module, ref_model: nn.Module, start: dict[str, torch.Tensor]) -> None:
    ref = dict(ref_model.named_parameters())
    moved = 0.0
    for n, p in fit_model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.detach(), ref[n].detach(), rtol=0, atol=1e-6, msg=lambda m: f"{n}: {m}")
            moved = max(moved, float((p.detach() - start[n]).abs().max()))
        else:
            assert torch.equal(p, ref[n]), f"frozen {n} differs"
    assert moved > 1e-2  # the weights really trained (the comparison is not of two untouched models)


def test_fit_equals_reference_loop_dcft():
    model = dropout_free_model("tiny-deberta")
    torch.manual_seed(1)
    method = build_method({"name": "dcft", "kernel": 4, "reg_orth_coef": 0.1})
    method.apply(model)
    assert_deterministic_in_train_mode(model)
    ref = clone(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    task = RecordingTask(model)
    tcfg = train_cfg(*TRAIN)
    state = run_fit(model, method, task, task_data(N_TRAIN), tcfg)
    assert state.step == MAX_STEPS
    check_batches(task.batches)
    norms = reference_loop(ref, task.batches, tcfg, method.extra_loss)
    assert min(norms) > MAX_NORM, norms  # clipping binds at every step
    compare(model, ref, start)


def test_fit_equals_reference_loop_dcft_with_grad_accum():
    """Two micro-batches of 2 per optimizer step: the loss of each is halved, one clip and one
    scheduler step per optimizer step."""
    model = dropout_free_model("tiny-deberta")
    torch.manual_seed(1)
    method = build_method({"name": "dcft", "kernel": 4, "reg_orth_coef": 0.1})
    method.apply(model)
    ref = clone(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    task = RecordingTask(model)
    tcfg = train_cfg(*TRAIN, "train.batch_size=2", "train.grad_accum=2")
    run_fit(model, method, task, task_data(N_TRAIN), tcfg)
    check_batches(task.batches, batch=2)
    norms = reference_loop(ref, task.batches, tcfg, method.extra_loss, grad_accum=2)
    assert min(norms) > MAX_NORM, norms
    compare(model, ref, start)


@pytest.mark.parametrize("sparse_lr", [None, 0.005])
def test_fit_equals_reference_loop_sora(sparse_lr):
    """SoRA brings its own optimizer: gates in a group of their own (no weight decay, `sparse_lr`,
    scheduled like the rest), soft-thresholded by xi after every step; the L1 term on the loss."""
    lam, xi = 0.5, 1e-3
    model = dropout_free_model("tiny-roberta")
    torch.manual_seed(1)
    method = build_method({"name": "sora", "r": 4, "sparse_lambda": lam, "sparse_lambda_2": xi,
                           "sparse_lr": sparse_lr})
    method.apply(model)
    assert_deterministic_in_train_mode(model)
    ref = clone(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    task = RecordingTask(model)
    tcfg = train_cfg(*TRAIN, "method=sora")
    run_fit(model, method, task, task_data(N_TRAIN), tcfg)
    check_batches(task.batches)

    def gates(m):
        return [p for n, p in m.named_parameters() if n.endswith("sora_gate")]

    def l1(m):  # sparse_lambda * sum |g| / (number of gate entries), written here
        gs = gates(m)
        return lam * sum(g.abs().sum() for g in gs) / sum(g.numel() for g in gs)

    def prox(opt):
        with torch.no_grad():
            for g in gates(ref):
                g.copy_(torch.sign(g) * torch.clamp(g.abs() - xi, min=0.0))

    gate_group = {"weight_decay": 0.0, "lr": sparse_lr or tcfg.lr}
    norms = reference_loop(ref, task.batches, tcfg, l1, special=lambda n: gate_group if n.endswith("sora_gate") else None,
                           after_step=prox)
    assert min(norms) > MAX_NORM, norms
    compare(model, ref, start)
