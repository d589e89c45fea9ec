"""The learning-rate schedule of `dcft.harness.train.fit`, pinned against the formula written by hand.

Linear warm-up then linear decay to 0 (the HF Trainer schedule of the authors' scripts), counted in
optimizer steps: with `total` steps and `warmup` warm-up steps, the k-th optimizer step (k = 0, 1,
...) uses `lr * k / warmup` while k < warmup, then `lr * (total - k) / (total - warmup)`.
`warmup = warmup_steps` when positive, else `ceil(warmup_ratio * total)`; `total = max_steps` when
positive, else `ceil(epochs * ceil(batches per epoch / grad_accum))`.

Two observations per run: the lr every parameter group really had when the optimizer stepped (the
optimizer's `step` wrapped), and the lr written to `log.jsonl` at step s, which is the scheduler's
lr after s steps, i.e. the lr step s + 1 will use (HF Trainer logs the same way).

Bugs this catches: warm-up counted in epochs, warm-up ten times too long, a constant lr, the
scheduler stepped per micro-batch, total steps counted in micro-batches, groups scheduled apart.
"""

from __future__ import annotations

import math

import pytest
import torch

from dcft.methods import build_method
from fit_probe import (RecordingTask, dropout_free_model, hf_linear_factor, read_log, record_lr, run_fit,
                       task_data, train_cfg)

LR = 0.01


def fit_and_observe(tmp_path, n_train: int, *overrides: str, method_cfg=None, model: str = "tiny-bert"):
    net = dropout_free_model(model)
    method = build_method(method_cfg or {"name": "dcft", "kernel": 8})
    method.apply(net)
    used = record_lr(method)
    tcfg = train_cfg(f"train.lr={LR}", *overrides)
    state = run_fit(net, method, RecordingTask(net), task_data(n_train), tcfg, tmp_path)
    return state, used, read_log(tmp_path)


def check(used, log, total: int, warmup: int, base: tuple[float, ...] | None = None) -> None:
    """`base`: each parameter group's peak lr, in group order (default: every group at LR)."""
    start = next(r for r in log if r["type"] == "start")
    assert (start["total_steps"], start["warmup_steps"]) == (total, warmup)
    assert len(used) == total  # one real optimizer step per optimizer step, no more
    for k, lrs in enumerate(used):
        want = [b * hf_linear_factor(k, warmup, total) for b in (base or [LR] * len(lrs))]
        assert lrs == pytest.approx(want, rel=1e-12, abs=1e-15), f"optimizer step {k + 1}"
    logged = {r["step"]: r["lr"] for r in log if r["type"] == "train"}
    assert sorted(logged) == list(range(1, total + 1))
    for s, lr in logged.items():
        assert lr == pytest.approx((base or [LR])[0] * hf_linear_factor(s, warmup, total), rel=1e-12, abs=1e-15), f"logged step {s}"


def test_warmup_ratio_over_epochs(tmp_path):
    # 24 examples / batch 4 = 6 steps per epoch, 2 epochs = 12 steps; warm-up ceil(0.25 x 12) = 3
    state, used, log = fit_and_observe(tmp_path, 24, "train.batch_size=4", "train.epochs=2", "train.warmup_ratio=0.25")
    assert state.step == 12
    check(used, log, total=12, warmup=3)
    assert max(u[0] for u in used) == pytest.approx(LR)  # the peak is reached, at step 4 (k = 3)
    assert used[0][0] == 0.0 and used[3][0] == pytest.approx(LR) and used[-1][0] == pytest.approx(LR / 9)


def test_warmup_steps_with_max_steps(tmp_path):
    # max_steps 10 (3 epochs of 4 batches, stopped early), warmup_steps 4 wins over warmup_ratio
    state, used, log = fit_and_observe(tmp_path, 16, "train.batch_size=4", "train.max_steps=10",
                                       "train.warmup_steps=4", "train.warmup_ratio=0.5")
    assert state.step == 10
    check(used, log, total=10, warmup=4)


def test_grad_accumulation_counts_optimizer_steps(tmp_path):
    # 24 examples / batch 2 = 12 micro-batches per epoch, grad_accum 3 -> 4 optimizer steps per epoch;
    # 2 epochs = 8 steps; warm-up ceil(0.3 x 8) = 3
    state, used, log = fit_and_observe(tmp_path, 24, "train.batch_size=2", "train.grad_accum=3", "train.epochs=2",
                                       "train.warmup_ratio=0.3")
    assert state.step == 8
    check(used, log, total=8, warmup=3)


def test_every_group_follows_the_schedule(tmp_path):
    """SoRA's gates have their own lr (`sparse_lr`); the scheduler scales it like the others."""
    cfg = {"name": "sora", "r": 2, "sparse_lr": 0.004}
    state, used, log = fit_and_observe(tmp_path, 16, "train.batch_size=4", "train.max_steps=6", "train.warmup_steps=2",
                                       "train.weight_decay=0.1", "method=sora", method_cfg=cfg, model="tiny-roberta")
    # groups: decayed weights, biases, gates (see test_weight_decay for which tensor sits where)
    check(used, log, total=6, warmup=2, base=(LR, LR, 0.004))
