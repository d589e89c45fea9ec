"""Claim verdicts against hand-computed t-intervals and TOST values.

Oracle: Student's t with 2 degrees of freedom has closed forms, quantile t_p = (2p - 1) / sqrt(2p(1 - p))
and survival sf(x) = (1 - x / sqrt(x^2 + 2)) / 2, so three seeds give intervals computable by hand.
"""

import math

import pytest

from dcft.report import claims as C


def t2(p):
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def test_t_quantile_matches_closed_form_df2():
    assert C.t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert C.t_quantile(0.95, 2) == pytest.approx(t2(0.95), rel=1e-9)


def test_paired_uses_common_seeds_only():
    p = C.paired({6: 80.0, 7: 81.0, 8: 82.0}, {6: 79.0, 7: 79.5})
    assert p.seeds == (6, 7) and p.diffs == (1.0, 1.5)


@pytest.mark.parametrize("diffs, word", [((2, 3, 4), "supported"),      # 3 +- 4.3027/sqrt(3): [0.516, 5.484]
                                          ((1, 2, 3), "inconclusive"),   # [-0.484, 4.484]: contains 0
                                          ((-4, -3, -2), "not supported")])
def test_better_reads_the_95_interval(diffs, word):
    p = C.Paired((6, 7, 8), tuple(float(d) for d in diffs))
    lo, hi = p.interval(0.95)
    half = t2(0.975) * 1.0 / math.sqrt(3)  # sd of three consecutive integers is 1
    assert (lo, hi) == pytest.approx((p.mean - half, p.mean + half))
    assert C.better(p) == word


def test_positive_but_not_significant_is_never_supported():
    p = C.Paired((6, 7, 8), (0.5, 3.0, 0.1))  # all positive, mean 1.2, but the interval reaches below 0
    assert p.interval()[0] < 0 < p.mean
    assert C.better(p) == "inconclusive"


def test_as_good_as_by_tost():
    p = C.Paired((6, 7, 8), (0.1, -0.1, 0.0))  # mean 0, sd 0.1: 90 % half-width 2.92 * 0.1 / sqrt(3) = 0.1686
    assert C.as_good_as(p, margin=0.5) == "supported"
    assert C.as_good_as(p, margin=0.1) == "inconclusive"  # 0.1686 > 0.1, and not outside the margin either
    x = 0.5 / (0.1 / math.sqrt(3))  # t statistic of both one-sided tests
    assert C.tost_p(p, 0.5) == pytest.approx((1 - x / math.sqrt(x * x + 2)) / 2, rel=1e-6)  # 0.006536
    worse = C.Paired((6, 7, 8), (-5.0, -4.0, -3.0))  # 95 %: [-6.48, -1.52], entirely below -0.5
    assert C.as_good_as(worse, margin=0.5) == "not supported"
    assert C.as_good_as(C.Paired((6,), (0.0,)), margin=0.5) == "inconclusive"  # one seed: no interval


def test_ordering_needs_every_adjacent_pair():
    cells = {"a": {6: 10.0, 7: 11.0, 8: 12.0}, "b": {6: 8.0, 7: 8.0, 8: 8.0}, "c": {6: 6.0, 7: 5.0, 8: 4.0}}
    # a - b = (2, 3, 4): supported; b - c = (2, 3, 4): supported
    assert C.verdict(C.Claim("abc", "ordering", ("a", "b", "c")), cells)[0] == "supported"
    cells["c"] = {6: 7.0, 7: 8.0, 8: 9.0}  # b - c = (1, 0, -1): inconclusive
    assert C.verdict(C.Claim("abc", "ordering", ("a", "b", "c")), cells)[0] == "inconclusive"
    cells["c"] = {6: 12.0, 7: 11.0, 8: 10.0}  # b - c = (-4, -3, -2): reversed beyond noise
    assert C.verdict(C.Claim("abc", "ordering", ("a", "b", "c")), cells)[0] == "not supported"


def test_bad_claims_are_refused_with_the_key():
    with pytest.raises(ValueError, match="kind='best'"):
        C.Claim("x", "best", ("a", "b"))
    with pytest.raises(ValueError, match="needs margin > 0"):
        C.Claim("x", "as_good_as", ("a", "b"))
    with pytest.raises(ValueError, match="takes two settings"):
        C.Claim("x", "better", ("a", "b", "c"))
    with pytest.raises(KeyError, match="no cell for b"):
        C.verdict(C.Claim("x", "better", ("a", "b")), {"a": {6: 1.0}})
