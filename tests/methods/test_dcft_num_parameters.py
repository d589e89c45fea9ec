"""`DCFTLinear.num_parameters` against the paper's count, worked out by hand (paper Sec. 3,
`dcft-method.md`): an adapted din x dout matrix trains `k*din' + k*dout' + d^2` numbers, with
`din' = (din - d)/s + 1`, `dout' = (dout - d)/s + 1` (A, B of rank k and the d x d kernel C)."""

from __future__ import annotations

import pytest

from conftest import tiny_model
from dcft.methods import build_method
from dcft.methods.dcft.layer import DCFTLinear


@pytest.mark.parametrize("kernel,stride,rank,total", [
    # tiny-deberta: hidden 48, FFN 96, 2 layers; ALL targets = q, k, v, o (48 x 48), FFN in (48 -> 96), out (96 -> 48)
    (8, None, 1, 2 * (4 * (6 + 6 + 64) + 2 * (6 + 12 + 64))),  # s = d: din' = 48/8 = 6, 96/8 = 12 -> 2 x 468 = 936
    (4, 2, 2, 2 * (4 * (2 * 23 + 2 * 23 + 16) + 2 * (2 * 23 + 2 * 47 + 16))),  # (48-4)/2+1 = 23, (96-4)/2+1 = 47 -> 1488
])
def test_num_parameters_follows_the_paper_formula(kernel, stride, rank, total):
    model = tiny_model("tiny-deberta")
    method = build_method({"name": "dcft", "kernel": kernel, "stride": stride, "rank": rank})
    method.apply(model)
    layers = [m for m in model.modules() if isinstance(m, DCFTLinear)]
    assert len(layers) == 12  # 6 matrices x 2 layers
    s = stride or kernel
    for m in layers:
        din, dout = m.in_features, m.out_features
        assert m.num_parameters() == rank * ((din - kernel) // s + 1) + rank * ((dout - kernel) // s + 1) + kernel ** 2
    assert sum(m.num_parameters() for m in layers) == total
    assert method.count(model).method == total  # the "#Params" the harness reports agrees
