"""`DCFT`: the harness's `Method` for DCFT (paper Sec. 3): each target `nn.Linear` becomes a
`DCFTLinear`, the orthogonal regulariser of eq. 4 is the method's extra loss, and the update
merges into the base weights for inference.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
from torch import nn

from dcft.methods.base import Method
from dcft.methods.dcft.config import Config
from dcft.methods.dcft.layer import DCFTLinear, shape_error
from dcft.harness.models import get_submodule_parent, in_out_features, iter_targets, resolve_targets


def dcft_layers(model: nn.Module) -> list[tuple[str, DCFTLinear]]:
    """The `DCFTLinear` modules of a model, with their names, in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DCFTLinear)]


class DCFT(Method):
    """DCFT: Delta = ConvTranspose2d(A^T B^T, C, stride s) on every target linear layer.

    Own parameters ("#Params", paper Sec. 4.1): per adapted matrix `k*din' + k*dout' + d^2`.
    """

    name = "dcft"
    can_merge = True

    def __init__(self, cfg: Config | Mapping[str, Any] | None = None):
        if cfg is None:
            cfg = Config()
        elif not isinstance(cfg, Config):
            cfg = Config(**dict(cfg))
        super().__init__(cfg)
        self.target_names: list[str] = []  # module names adapted by `inject`

    # --- building ---------------------------------------------------------------------------------
    def validate(self, model: nn.Module, targets: Any) -> None:
        """Every target's shape is checked before anything is injected; all failing modules are
        reported in one `ValueError` (module name, (din, dout), kernel, stride, working values)."""
        if dcft_layers(model):
            raise ValueError("this model already has DCFT layers: apply DCFT to a fresh base model")
        cfg = self.cfg
        failing: dict[tuple[int, int], list[str]] = {}  # (din, dout) -> names of modules that do not fit
        for n, m in iter_targets(model, resolve_targets(model, targets)):
            din, dout = in_out_features(m)
            if shape_error(n, din, dout, cfg.kernel, cfg.stride):
                failing.setdefault((din, dout), []).append(n)
        if failing:
            lines = []
            for (din, dout), names in failing.items():
                line = shape_error(names[0], din, dout, cfg.kernel, cfg.stride)
                if len(names) > 1:
                    line += f" (and {len(names) - 1} more target modules of this size, e.g. {names[1]!r})"
                lines.append("- " + line)
            n_bad = sum(map(len, failing.values()))
            raise ValueError(f"method=dcft kernel={cfg.kernel} stride={cfg.step} does not fit {n_bad} of the "
                             f"target modules (targets={targets!r}); nothing was changed:\n" + "\n".join(lines))

    def inject(self, model: nn.Module, targets: Any) -> None:
        """Replace each target `nn.Linear` / `Conv1D` by a `DCFTLinear` wrapping it (in place)."""
        names = resolve_targets(model, targets)
        for name, linear in list(iter_targets(model, names)):
            parent, child = get_submodule_parent(model, name)
            setattr(parent, child, DCFTLinear.from_config(linear, self.cfg, name=name))
        self.target_names = names

    # --- what trains ------------------------------------------------------------------------------
    def own_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        """A, B and C of every DCFT layer."""
        for name, layer in dcft_layers(model):
            yield f"{name}.A", layer.A
            yield f"{name}.B", layer.B
            yield f"{name}.C", layer.C

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """Orthogonal regulariser (paper eq. 4), as the authors' code computes it:
        gamma * (sum of ||A A^T - I||_F over all A + sum of ||B^T B - I||_F over all B)
        / (number of A's + number of B's). None when gamma = 0 or nothing is adapted."""
        gamma = self.cfg.reg_orth_coef
        layers = dcft_layers(model)
        if gamma == 0 or not layers:
            return None
        terms = [t for _, layer in layers for t in layer.orth_terms()]
        return gamma * torch.stack(terms).sum() / len(terms)

    # --- inference ----------------------------------------------------------------------------------
    def merge(self, model: nn.Module) -> nn.Module:
        """W <- W0 + scaling * Delta^T in every DCFT layer; forward is then the base model's."""
        for _, layer in dcft_layers(model):
            layer.merge()
        return model

    def unmerge(self, model: nn.Module) -> nn.Module:
        """Undo `merge` in every DCFT layer."""
        for _, layer in dcft_layers(model):
            layer.unmerge()
        return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every DCFT layer and put its base module (`nn.Linear` / `Conv1D`) back in its place:
    the model is then an ordinary transformers model (its state dict has the original keys, so
    `save_pretrained` + `from_pretrained` reproduce it). In place; returns `model`."""
    for name, layer in dcft_layers(model):
        layer.merge()
        parent, child = get_submodule_parent(model, name)
        setattr(parent, child, layer.base)
    return model
