"""Live-rank counts of the methods whose rank changes while training: SoRA's gates
and AdaLoRA's allocator. The paper's SoRA cell (0.12M) is the live count after training; the result
record keeps it beside the nominal (allocated) one. Expected numbers are computed here by hand from
the tiny model's sizes (hidden 48, FFN 96, 2 layers; conf/model/tiny-deberta.yaml)."""

from __future__ import annotations

import torch

from conftest import tiny_model
from dcft.methods import build_method

H, FFN, LAYERS = 48, 96, 2
# per layer: Q, K, V, attention output (H -> H), FFN in (H -> FFN), FFN out (FFN -> H)
SHAPES = [(H, H)] * 4 + [(H, FFN), (FFN, H)]
MATRICES = len(SHAPES) * LAYERS


def test_sora_live_count_drops_when_gates_are_zeroed():
    model = tiny_model("tiny-deberta")
    method = build_method({"name": "sora", "r": 4})
    method.apply(model)
    nominal = LAYERS * sum(4 * (din + dout + 1) for din, dout in SHAPES)
    before = method.rank_report(model)
    assert before == {"nominal_ranks": 4 * MATRICES, "live_ranks": 4 * MATRICES,
                      "nominal_params": nominal, "live_params": nominal}
    gates = dict(method.gates(model))
    query = next(n for n in gates if "layer.0.attention.self.query_proj" in n)
    ffn_out = next(n for n in gates if "layer.1.output.dense" in n)
    with torch.no_grad():
        gates[query][:3] = 0.0  # three dead ranks in an H -> H matrix
        gates[ffn_out][:1] = 0.0  # one in the FFN -> H matrix
    after = method.rank_report(model)
    assert after["nominal_ranks"] == 4 * MATRICES and after["nominal_params"] == nominal
    assert after["live_ranks"] == 4 * MATRICES - 4
    assert after["live_params"] == nominal - 3 * (H + H + 1) - (FFN + H + 1)


def test_adalora_live_count_follows_the_singular_values():
    model = tiny_model("tiny-deberta")
    method = build_method({"name": "adalora", "init_r": 3, "target_r": 1, "tinit": 1, "tfinal": 1})
    method.apply(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_E" in n:
                p.fill_(0.5)  # every singular value alive
    nominal = LAYERS * sum(3 * (din + dout + 1) for din, dout in SHAPES)
    report = method.rank_report(model)
    assert report["nominal_ranks"] == 3 * MATRICES and report["target_ranks"] == MATRICES
    assert report["live_ranks"] == 3 * MATRICES and report["nominal_params"] == nominal
    with torch.no_grad():
        first = next(p for n, p in model.named_parameters() if "lora_E" in n)
        first.view(-1)[:2] = 0.0  # the allocator masked two singular values
    assert method.rank_report(model)["live_ranks"] == 3 * MATRICES - 2



def test_methods_with_a_fixed_rank_report_none():
    model = tiny_model("tiny-deberta")
    method = build_method({"name": "lora", "r": 2})
    method.apply(model)
    assert method.rank_report(model) is None
