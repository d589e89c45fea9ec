"""Method-specific behaviour: AdaLoRA's rank schedule and orthogonal penalty, SoRA's proximal gate
step, pruning and live count, LoRA-FA's frozen A (both variants)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from test_baseline_common import LABELS, make, one_thread, train  # noqa: F401 (autouse fixture)

N_MODULES = 12  # tiny models: 2 layers x 6 targets (ALL)


# --- AdaLoRA -------------------------------------------------------------------------------------------
def step_once(method, model, opt, step, tokens):
    loss = model(**tokens, labels=LABELS).loss + method.extra_loss(model)
    loss.backward()
    opt.step()
    method.after_step(model, step, opt)
    opt.zero_grad(set_to_none=True)


def test_adalora_ranks_shrink_to_target_on_schedule(tokens):
    model, method = make("adalora", "tiny-deberta", init_r=4, target_r=2, tinit=2, tfinal=3, deltaT=1)
    total = 10
    opt = method.optimizer(model, 1e-2, 0.0)
    method.prepare_training(model, total)
    assert method.peft_config.total_step == total and method.schedule == {"tinit": 2, "tfinal": 3, "total_step": 10}
    alloc = method.tuner.rankallocator
    assert alloc.init_bgt == 4 * N_MODULES and alloc.target_bgt == 2 * N_MODULES
    live = []
    for step in range(1, total + 1):
        step_once(method, model, opt, step, tokens)
        live.append(sum(method.live_ranks(model).values()))
    assert live[:2] == [4 * N_MODULES] * 2  # warm-up (step <= tinit): full budget, nothing masked
    for step in range(3, 8):  # budgeting: never above the cubic schedule
        assert live[step - 1] <= alloc.budget_schedule(step)[0]
    assert live[2] < 4 * N_MODULES  # the first allocation already prunes
    assert live[6:] == [2 * N_MODULES] * 4  # step total - tfinal = 7: the target budget, then fixed
    pattern = method.peft_config.rank_pattern
    assert pattern and sum(sum(v) for v in pattern.values()) == 2 * N_MODULES
    eff, nominal = method.count_effective(model), method.count(model)
    assert eff.method < nominal.method
    shapes = {n: (m.in_features, m.out_features) for n, m in
              ((n, model.get_submodule(n)) for n in method.live_ranks(model))}
    assert eff.method == sum(r * (sum(shapes[n]) + 1) for n, r in method.live_ranks(model).items())


def test_adalora_short_run_scales_the_schedule_and_still_reaches_target(tokens):
    model, method = make("adalora", "tiny-roberta", init_r=3, target_r=1, tinit=600, tfinal=1800)
    opt = method.optimizer(model, 1e-2, 0.0)
    with pytest.warns(UserWarning, match="no budgeting phase"):
        method.prepare_training(model, 4)
    s = method.schedule
    assert s["total_step"] == 4 and s["tinit"] < 4 - s["tfinal"]
    for step in range(1, 5):
        step_once(method, model, opt, step, tokens)
    assert sum(method.live_ranks(model).values()) == N_MODULES


def test_adalora_orthogonal_penalty_is_counted_once(tokens):
    model, method = make("adalora", "tiny-deberta", orth_reg_weight=0.3, tinit=5, tfinal=2)
    out = model(**tokens, labels=LABELS)
    # the model's own loss is the task loss alone: peft's forward (which would add it) never runs
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, LABELS))
    terms = []
    for n, p in model.named_parameters():
        if ".lora_A." in n:
            terms.append(torch.linalg.norm(p @ p.T - torch.eye(p.shape[0])))
        elif ".lora_B." in n:
            terms.append(torch.linalg.norm(p.T @ p - torch.eye(p.shape[1])))
    assert len(terms) == 2 * N_MODULES
    torch.testing.assert_close(method.extra_loss(model), 0.3 * torch.stack(terms).mean())
    _, none = make("adalora", "tiny-deberta", orth_reg_weight=0.0, tinit=5, tfinal=2)
    assert none.extra_loss(model) is None


def test_adalora_after_step_refuses_another_model():
    model, method = make("adalora", "tiny-deberta", tinit=5, tfinal=2)
    other, _ = make("adalora", "tiny-deberta", tinit=5, tfinal=2)
    method.prepare_training(model, 10)
    with pytest.raises(RuntimeError, match="not applied"):
        method.after_step(other, 1)


# --- SoRA ----------------------------------------------------------------------------------------------
def test_proximal_step_soft_thresholds_by_an_absolute_xi():
    from dcft.methods.sora import ProximalAdamW

    xi = 3e-4
    g = torch.nn.Parameter(torch.tensor([0.5, -2e-4, 1e-4, -0.3, 3e-4, -5e-4, 0.0]))
    w = torch.nn.Parameter(torch.tensor([1e-4, -1e-4]))
    opt = ProximalAdamW([{"params": [g], "lr": 0.0, "weight_decay": 0.0, "prox_threshold": xi},
                         {"params": [w], "lr": 0.0, "weight_decay": 0.0}], lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)  # a scheduler accepts it
    g.grad, w.grad = torch.ones_like(g), torch.ones_like(w)
    before = g.detach().clone()
    opt.step()
    sched.step()
    expected = before.sign() * (before.abs() - xi).clamp_min(0)  # lr = 0: the step is the prox alone
    assert torch.equal(g.detach(), expected)
    assert (g.detach()[[1, 2, 4, 6]] == 0).all() and g.detach()[0] == 0.5 - xi
    assert torch.equal(w.detach(), torch.tensor([1e-4, -1e-4]))  # no threshold on other groups
    state = opt.state_dict()
    assert state["param_groups"][0]["prox_threshold"] == xi
    opt.load_state_dict(state)


def test_sora_optimizer_groups_and_sparse_loss():
    model, method = make("sora", "tiny-deberta", sparse_lambda=10.0, sparse_lambda_2=3e-4, sparse_lr=0.5)
    opt = method.optimizer(model, 1e-3, 0.1)
    gate_ids = {id(p) for _, p in method.gates(model)}
    gate_groups = [g for g in opt.param_groups if g.get("prox_threshold", 0) > 0]
    assert len(gate_groups) == 1
    (gg,) = gate_groups
    assert {id(p) for p in gg["params"]} == gate_ids
    assert gg["prox_threshold"] == 3e-4 and gg["weight_decay"] == 0.0 and gg["lr"] == 0.5
    others = {id(p) for g in opt.param_groups if g is not gg for p in g["params"]}
    assert others.isdisjoint(gate_ids)
    assert others | gate_ids == {id(p) for _, p in method.trainable_parameters(model)}
    gates = torch.cat([p.detach() for _, p in method.gates(model)])
    assert gates.numel() == 8 * N_MODULES
    torch.testing.assert_close(method.extra_loss(model), 10.0 * gates.abs().sum() / gates.numel())


def test_sora_dead_ranks_are_counted_out_and_pruned_without_changing_outputs(tokens):
    model, method = make("sora", "tiny-deberta", sparse_lambda_2=0.7)  # a large xi kills many gates
    nominal = method.count_nominal(model)
    train(method, model, tokens, steps=3)
    live = method.live_ranks(model)
    assert 0 < sum(live.values()) < 8 * N_MODULES
    sizes = {n: m.in_features + m.out_features for n, m in method.layers(model)}
    count = method.count(model)
    assert count.method == sum(live[n] * (sizes[n] + 1) for n in live) < nominal.method
    assert count.head == nominal.head
    with torch.no_grad():
        ref = model(**tokens).logits
    dropped = method.prune(model)
    assert sum(dropped.values()) == 8 * N_MODULES - sum(live.values())
    assert {n: m.rank for n, m in method.layers(model)} == live
    assert method.count_nominal(model).method == count.method == method.count(model).method
    with torch.no_grad():
        torch.testing.assert_close(model(**tokens).logits, ref, rtol=1e-6, atol=1e-6)
        method.merge(model)
        torch.testing.assert_close(model(**tokens).logits, ref, rtol=1e-5, atol=1e-5)
        method.unmerge(model)
    state = method.state_dict(model)  # a pruned checkpoint loads into a fresh, unpruned model
    fresh, fresh_method = make("sora", "tiny-deberta", sparse_lambda_2=0.7)
    fresh_method.load_state_dict(fresh, state)
    with torch.no_grad():
        torch.testing.assert_close(fresh(**tokens).logits, ref, rtol=1e-6, atol=1e-6)


# --- LoRA-FA ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ("frozen_a", "peft_optimizer"))
def test_lorafa_a_never_changes(variant, tokens):
    model, method = make("lorafa", "tiny-roberta", variant=variant)
    a0 = {n: p.detach().clone() for n, p in method.frozen_a(model)}
    b0 = {n: p.detach().clone() for n, p in method.own_parameters(model)}
    assert len(a0) == len(b0) == N_MODULES and not any(p.requires_grad for _, p in method.frozen_a(model))
    opt = train(method, model, tokens, steps=4)
    if variant == "peft_optimizer":
        from peft.optimizers.lorafa import LoraFAOptimizer

        assert isinstance(opt, LoraFAOptimizer)
    for n, p in method.frozen_a(model):
        assert torch.equal(p.detach(), a0[n])
    for n, p in method.own_parameters(model):
        assert not torch.equal(p.detach(), b0[n])
    assert set(method.state_dict(model)) >= set(a0)  # the random A is part of the checkpoint


def test_lorafa_variants_differ(tokens):
    """peft's optimizer rescales B's gradient: from the same start, the first B update differs."""
    bs = []
    for variant in ("frozen_a", "peft_optimizer"):
        torch.manual_seed(0)
        model, method = make("lorafa", "tiny-deberta", variant=variant, alpha=4.0)
        train(method, model, tokens, steps=1)
        bs.append(torch.cat([p.detach().flatten() for _, p in method.own_parameters(model)]))
    assert not torch.allclose(bs[0], bs[1])

