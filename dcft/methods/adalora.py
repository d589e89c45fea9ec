"""AdaLoRA (Zhang et al., ICLR 2023, "Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning").

SVD-form update `y += (alpha / r_init) · P (Λ ⊙ (Q x))` with P (dout × r), Λ (r), Q (r × din); the
rank allocator scores each triplet by smoothed sensitivity × uncertainty (EMA factors beta1, beta2) and
zeroes the least important singular values, shrinking the total budget from `init_r` to `target_r` per
matrix on a cubic schedule: `tinit` warm-up steps at full budget, then the decrease, masking every
`deltaT` steps, and `tfinal` final steps at the target budget with the mask fixed. The loss carries
the orthogonal regulariser `orth_reg_weight · mean_{P, Q} ||PᵀP − I||_F` (resp. `QQᵀ`).

Implementation: `peft.AdaLoraConfig` / `AdaLoraModel` (same maths as the reference code,
QingruZhang/AdaLoRA), with the reference defaults, which are not peft's: the defaults below are the
reference's DeBERTaV3-base RTE script (`--lora_r 2 --target_rank 1 --init_warmup 600
--final_warmup 1800 --mask_interval 1 --beta1 0.85 --beta2 0.85 --reg_orth_coef 0.3 --lora_alpha
32`); other tasks' values belong in a per-task override.

* The adapters are injected in place into the transformers model (the loop never sees a peft wrapper);
  the `AdaLoraModel` tuner object is kept by this method, because its `update_and_allocate(step)`
  drives the rank allocator. `after_step` calls it after `optimizer.step()` and before `zero_grad()`,
  as the allocator reads the gradients.
* `total_step` is only known once the loop has built its data loader: `prepare_training` writes it
  into the tuner's config (a placeholder is used at injection). If `tinit + tfinal` do not leave a
  budgeting phase in a short run (a smoke test), both are scaled down to half the run, with a warning.
* The orthogonal penalty: peft adds it inside `AdaLoraModel.forward` only when labels are passed.
  The loop calls the transformers model directly, never the tuner's forward, so peft never adds it;
  `extra_loss` adds it, exactly once per step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from dcft.methods.base import Method, ParamCount
from dcft.methods.lora import (ADAPTER, PeftMerge, check_dropout, check_rank, check_targets_free, fan_in_fan_out,
                               params_with, peft_lora_layers, peft_target_check)
from dcft.harness.models import resolve_targets


@dataclass
class Config:
    """AdaLoRA (Zhang et al. 2023): SVD-form low-rank update with importance-driven rank pruning."""

    name: str = "adalora"  # registry key
    targets: Any = "all"  # target set (all, qk, qv, qkv, qkvo), list of module-name suffixes, or regex (dcft.harness.models.resolve_targets)
    init_r: int = 2  # initial rank of every adapted matrix (reference --lora_r)
    target_r: int = 1  # final average rank per matrix; total budget = target_r x matrices (reference --target_rank)
    lora_alpha: float = 32.0  # scaling numerator: update scaled by lora_alpha / init_r (reference --lora_alpha)
    dropout: float = 0.0  # dropout probability on the adapter's input x
    tinit: int = 600  # initial warm-up at full budget, optimizer steps (reference --init_warmup)
    tfinal: int = 1800  # final fine-tuning at the target budget, optimizer steps (reference --final_warmup)
    deltaT: int = 1  # interval between two budget allocations, optimizer steps (reference --mask_interval)
    beta1: float = 0.85  # EMA factor of the sensitivity smoothing
    beta2: float = 0.85  # EMA factor of the uncertainty quantification
    orth_reg_weight: float = 0.3  # weight of the orthogonal regulariser on P and Q (reference --reg_orth_coef)


def fit_schedule(tinit: int, tfinal: int, total_steps: int) -> tuple[int, int]:
    """`(tinit, tfinal)` unchanged if they leave a budgeting phase in `total_steps`, else scaled down
    so that together they take half of the run."""
    if tinit < total_steps - tfinal:
        return tinit, tfinal
    span = max(0, total_steps // 2)
    total = max(1, tinit + tfinal)
    new_init = int(span * tinit / total)
    new_final = span - new_init
    return new_init, new_final


class AdaLoRA(PeftMerge, Method):
    """AdaLoRA via peft's `AdaLoraModel`, injected in place; the tuner drives the rank allocator."""

    name = "adalora"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.tuner = None  # peft AdaLoraModel (holds the rank allocator); set by inject
        self.schedule: dict[str, int] = {}  # tinit / tfinal / total_step actually used

    # --- building ----------------------------------------------------------------------------------
    def validate(self, model: nn.Module, targets: str) -> None:
        c = self.cfg
        check_rank(c.init_r, "init_r")
        check_dropout(c.dropout)
        if not isinstance(c.target_r, int) or not 0 <= c.target_r <= c.init_r:
            raise ValueError(f"target_r={c.target_r!r}: must be an integer in [0, init_r={c.init_r}]")
        if c.tinit < 0 or c.tfinal < 0 or c.deltaT < 1:
            raise ValueError(f"tinit={c.tinit}, tfinal={c.tfinal} must be >= 0 and deltaT={c.deltaT} >= 1")
        if not (0 < c.beta1 < 1 and 0 < c.beta2 < 1):
            raise ValueError(f"beta1={c.beta1}, beta2={c.beta2}: must be in (0, 1)")
        if c.orth_reg_weight < 0:
            raise ValueError(f"orth_reg_weight={c.orth_reg_weight}: must be >= 0")
        fan_in_fan_out(model, resolve_targets(model, targets), self.name)  # raises on bad targets

    def inject(self, model: nn.Module, targets: str) -> None:
        from peft import AdaLoraConfig
        from peft.tuners.adalora import AdaLoraModel

        c = self.cfg
        names = resolve_targets(model, targets)
        check_targets_free(model, names, self.name)
        pc = AdaLoraConfig(
            init_r=c.init_r, target_r=c.target_r, lora_alpha=c.lora_alpha, lora_dropout=c.dropout,
            tinit=c.tinit, tfinal=c.tfinal, deltaT=c.deltaT, beta1=c.beta1, beta2=c.beta2,
            orth_reg_weight=c.orth_reg_weight, target_modules=list(names), bias="none",
            fan_in_fan_out=fan_in_fan_out(model, names, self.name),
            total_step=c.tinit + c.tfinal + 1,  # placeholder: prepare_training sets the run's value
        )
        self.tuner = AdaLoraModel(model, pc, ADAPTER)
        if self.tuner.model is not model:
            raise RuntimeError("adalora: peft did not adapt the model in place")
        peft_target_check(model, names, self.name)
        for p in model.parameters():  # `apply` unfreezes exactly own parameters and head next
            p.requires_grad_(False)
        self.schedule = {"tinit": c.tinit, "tfinal": c.tfinal, "total_step": pc.total_step}

    @property
    def peft_config(self):
        if self.tuner is None:
            raise RuntimeError("adalora: apply() the method to a model first")
        return self.tuner.peft_config[ADAPTER]

    # --- what trains ---------------------------------------------------------------------------------
    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        return params_with(model, "lora_A", "lora_E", "lora_B")

    def count_effective(self, model: nn.Module) -> ParamCount:
        """Like `count`, with only the ranks the allocator kept (after the final mask; before it, all)."""
        base = self.count(model)
        pattern = self.peft_config.rank_pattern
        if not pattern:
            return base
        live = 0
        for mod_name, layer in peft_lora_layers(model):
            key = f"{mod_name}.lora_E.{ADAPTER}"
            kept = pattern.get(key, pattern.get(f"{mod_name}.lora_E"))
            r = int(sum(bool(k) for k in kept)) if kept is not None else layer.r[ADAPTER]
            live += r * (layer.in_features + layer.out_features + 1)
        return ParamCount(method=live, head=base.head, total=base.total)

    # --- training hooks --------------------------------------------------------------------------------
    def prepare_training(self, model: nn.Module, total_steps: int) -> None:
        c, pc = self.cfg, self.peft_config
        tinit, tfinal = fit_schedule(c.tinit, c.tfinal, total_steps)
        if (tinit, tfinal) != (c.tinit, c.tfinal):
            warnings.warn(
                f"adalora: tinit={c.tinit} + tfinal={c.tfinal} leave no budgeting phase in {total_steps} "
                f"steps; using tinit={tinit}, tfinal={tfinal} for this run", stacklevel=2)
        pc.tinit, pc.tfinal = tinit, tfinal
        self.tuner.rankallocator.set_total_step(total_steps)  # the allocator shares `pc`
        self.schedule = {"tinit": tinit, "tfinal": tfinal, "total_step": total_steps}

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """`orth_reg_weight · mean over P and Q of ||PᵀP − I||_F` (QQᵀ for Q): the reference's
        regulariser, added here and only here (the tuner's forward, which would add it, is never run)."""
        w = self.cfg.orth_reg_weight
        if w == 0:
            return None
        terms = []
        for n, p in params_with(model, "lora_A", "lora_B"):
            cov = p @ p.T if ".lora_A." in f".{n}." else p.T @ p
            eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            terms.append(torch.linalg.matrix_norm(cov - eye, ord="fro"))
        if not terms:
            return None
        return w * torch.stack(terms).mean()

    def after_step(self, model: nn.Module, step: int, optimizer=None) -> None:
        """Update importance scores and the budget mask (reads the gradients: before `zero_grad`)."""
        if self.tuner is None or self.tuner.model is not model:
            raise RuntimeError("adalora: after_step got a model this method was not applied to")
        pc = self.peft_config
        if step > pc.total_step - pc.tfinal and not pc.rank_pattern:
            # resumed inside the final phase: the fixed mask is the set of non-zero singular values
            pc.rank_pattern = {n: (p != 0).view(-1).tolist() for n, p in params_with(model, "lora_E")}
        if step >= pc.total_step - pc.tfinal and not self.tuner.rankallocator.exp_avg_ipt:
            # a run too short to have scored anything before the final mask: score once now
            self.tuner.rankallocator.update_ipt(model)
        self.tuner.update_and_allocate(step)

    def training_state(self) -> dict:
        """The allocator's smoothed sensitivity / uncertainty scores and the final mask: without them a
        run resumed mid-budgeting would restart the EMAs from zero and prune differently."""
        if self.tuner is None:
            return {}
        ra = self.tuner.rankallocator
        return {"ipt": dict(ra.ipt), "exp_avg_ipt": dict(ra.exp_avg_ipt), "exp_avg_unc": dict(ra.exp_avg_unc),
                "rank_pattern": dict(self.peft_config.rank_pattern or {}), "schedule": dict(self.schedule)}

    def load_training_state(self, state: dict) -> None:
        if not state:
            return
        if state["schedule"] != self.schedule:
            raise ValueError(f"adalora: checkpoint schedule {state['schedule']} != this run's {self.schedule}")
        ra = self.tuner.rankallocator
        ra.ipt, ra.exp_avg_ipt, ra.exp_avg_unc = (dict(state[k]) for k in ("ipt", "exp_avg_ipt", "exp_avg_unc"))
        self.peft_config.rank_pattern = dict(state["rank_pattern"]) or None

    def rank_report(self, model: nn.Module) -> dict[str, Any]:
        """Nominal (`init_r` per matrix), target (`target_r` per matrix) and live (non-zero singular
        values) ranks; parameters allocated and kept (`count_effective`)."""
        live = self.live_ranks(model)
        return {"nominal_ranks": self.cfg.init_r * len(live), "target_ranks": self.cfg.target_r * len(live),
                "live_ranks": sum(live.values()), "nominal_params": self.count(model).method,
                "live_params": self.count_effective(model).method}

    def live_ranks(self, model: nn.Module) -> dict[str, int]:
        """Non-zero singular values per adapted module (the ranks the allocator has kept)."""
        return {mod_name: int((layer.lora_E[ADAPTER] != 0).sum()) for mod_name, layer in peft_lora_layers(model)}

