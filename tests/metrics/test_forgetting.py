"""The NeurIPS 2023 challenge's forgetting quality and KLoM: hand-worked cases, a direct re-statement of the
reference's threshold sweep, and the extremes (identical samples, separated samples)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from expunge.metrics import forgetting_quality, klom
from expunge.metrics.forgetting import DELTA, EPSILON_CAP, example_epsilons, h_score


def _direct_epsilon(unlearned: np.ndarray, oracle: np.ndarray) -> float:
    """One example, every rate computed by direct comparison at every threshold of the reference's two grids."""
    pos, neg = (oracle, unlearned) if np.median(oracle) > np.median(unlearned) else (unlearned, oracle)
    pr, nr = np.ptp(pos), np.ptp(neg)
    if max(pr, nr) > 0 and min(pr, nr) / max(pr, nr) < 0.01:
        return EPSILON_CAP
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, int(np.ceil((hi - lo) * 100)))[:, None]
    rates = [((pos >= t).mean(1), (neg >= t).mean(1))]
    narrow, wide = (neg, pos) if pr >= nr else (pos, neg)
    w = min(pr, nr)
    right = np.linspace(narrow.min() + w - 2, narrow.max() + 2, int(np.ceil((narrow.max() + 2 -
                                                                           (narrow.min() + w - 2)) * 100)))
    for r in right:
        left = np.linspace(r - w - 2, r - w + 2, 400)[:, None]
        rates.append((((left <= narrow) & (narrow <= r)).mean(1), ((left <= wide) & (wide <= r)).mean(1)))
    tpr, fpr = (np.concatenate(x) for x in zip(*rates))
    fnr = 1 - tpr
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.clip(np.fmax(np.log(1 - DELTA - fpr) - np.log(fnr), np.log(1 - DELTA - fnr) - np.log(fpr)), 0, None)
    eps = np.where((fpr == 0) & (fnr == 0), np.inf, np.where((fpr == 0) | (fnr == 0), np.nan, eps))
    return float(min(np.nanmax(eps), EPSILON_CAP)) if not np.isnan(eps).all() else 0.0


def test_hand_computed_epsilons_and_scores():
    u = np.array([[0, 1, 1], [1, 2, 2], [2, 3, 3], [11.5, 4, 4]])   # 4 unlearned models, 3 examples
    o = np.array([[10, 1, 14], [11, 2, 15], [12, 3, 16], [3, 4, 17]])
    # example 0: best threshold keeps 3 of 4 oracle values and 1 of 4 unlearned: ε = log(0.75 − δ) − log(0.25)
    # example 1: identical samples: every threshold has TPR = FPR, so ε = 0
    # example 2: perfectly separated: FPR = FNR = 0, ε = ∞, capped at 50
    eps = example_epsilons(u, o)
    assert eps == pytest.approx([math.log(3 - 4 * DELTA), 0.0, EPSILON_CAP], abs=1e-12)
    # H = 2^(−⌊2ε⌋) below ⌈ln(4 − 1)⌉ = 2: 1/4, 1, 0
    result = forgetting_quality(u, o, retain_acc=([0.9, 0.7], 1.0), test_acc=(0.6, [0.8, 0.8]))
    assert result.h == pytest.approx([0.25, 1.0, 0.0])
    assert result.forget_quality == pytest.approx(1.25 / 3)
    assert result.final == pytest.approx(1.25 / 3 * 0.8 * 0.75)
    assert (result.n_unlearned, result.n_oracle, result.n_examples) == (4, 4, 3)


def test_narrow_distribution_gets_the_cap():
    u = np.array([[2.5], [2.5], [2.5], [2.5001]])
    o = np.array([[1.0], [2.0], [3.0], [4.0]])
    assert example_epsilons(u, o)[0] == EPSILON_CAP


@pytest.mark.parametrize("seed", range(3))
def test_epsilons_equal_a_direct_sweep_of_every_threshold(seed):
    rng = np.random.default_rng(seed)
    cols = [rng.normal(0, 1, (2, 8)), rng.normal([[0], [0.7]], [[1], [0.4]], (2, 8)),
            rng.integers(0, 4, (2, 8)).astype(float), rng.normal([[0], [3]], 1, (2, 8)),
            rng.normal([[0], [2]], [[6], [4]], (2, 8)), rng.normal([[0], [-1]], [[8], [3]], (2, 8))]
    u = np.stack([c[0] for c in cols], axis=1)
    o = np.stack([c[1] for c in cols], axis=1)
    want = [_direct_epsilon(u[:, s], o[:, s]) for s in range(u.shape[1])]
    assert example_epsilons(u, o) == pytest.approx(want, abs=1e-12)


def test_score_falls_as_the_distributions_move_apart():
    rng = np.random.default_rng(0)
    u, o = rng.normal(0, 1, (64, 20)), rng.normal(0, 1, (64, 20))
    assert forgetting_quality(u, u.copy()).forget_quality == 1.0
    # independent samples of one distribution: the maximum over ~160 000 thresholds finds ε ≈ 1.6 by chance
    same = forgetting_quality(u, o)
    assert same.forget_quality > 0.15 and np.median(same.epsilons) < 2.0
    shifted = [forgetting_quality(u, o + shift).forget_quality for shift in (0.5, 1.0, 2.0)]
    assert same.forget_quality > shifted[0] > shifted[1] > shifted[2] > 0
    far = forgetting_quality(u, o + 10)
    assert far.forget_quality == 0.0 and np.all(far.epsilons == EPSILON_CAP)
    assert same.final is None and set(same.summary()) == {"challenge_forget_quality", "challenge_eps_mean",
                                                          "challenge_n_models"}


def test_h_score_limits():
    assert h_score(np.array([0.0, 0.49, 0.5, 1.99, 2.0]), 4).tolist() == [1.0, 1.0, 0.5, 0.125, 0.0]
    assert h_score(np.array([0.0]), 2).tolist() == [0.0]          # ⌈ln 1⌉ = 0: nothing scores


def test_forgetting_quality_rejects_bad_input():
    u = np.zeros((4, 3))
    with pytest.raises(ValueError, match="same number of examples"):
        forgetting_quality(u, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        forgetting_quality(np.zeros((1, 3)), u)
    with pytest.raises(ValueError, match="both retain_acc and test_acc"):
        forgetting_quality(u, u, retain_acc=(1.0, 1.0))
    with pytest.raises(ValueError, match="oracle retain accuracy must be > 0"):
        forgetting_quality(u, u, retain_acc=(1.0, 0.0), test_acc=(1.0, 1.0))


def test_klom_extremes():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 1, (100, 30))
    assert klom(m, m.copy()).per_example == pytest.approx(np.zeros(30), abs=1e-12)
    apart = klom(m + 50, m)                     # disjoint: every unlearned bin is empty under the oracle
    assert np.all(apart.per_example > 10)
    clipped = klom(np.full((3, 2), 1e4), np.full((3, 2), 100.0)).per_example   # both clipped to 100
    assert clipped == pytest.approx([0.0, 0.0], abs=1e-12)


def test_klom_hand_computed():
    # joint range [0, 2]: 0 falls in the first bin, 2 (the maximum) in the last
    u = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [2.0, 1.0]])
    o = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    r = klom(u, o)
    smoothed = 1e-5 / (1 + 1e-5)
    want1 = 0.5 * math.log(0.5 / (1 - smoothed)) + 0.5 * math.log(0.5 / smoothed)
    assert r.per_example == pytest.approx([0.5 * math.log(3), want1], rel=1e-12)
    assert r.mean == pytest.approx(r.per_example.mean())
    assert r.percentile == pytest.approx(np.percentile(r.per_example, 95))
    assert set(r.summary()) == {"klom_mean", "klom_p95", "klom_n_models"}


def test_klom_is_vectorised_over_examples():
    rng = np.random.default_rng(1)
    u, o = rng.normal(0, 1, (20, 6)), rng.normal(0.5, 2, (25, 6))
    each = [klom(u[:, [s]], o[:, [s]]).per_example[0] for s in range(6)]
    assert klom(u, o).per_example == pytest.approx(each)
    with pytest.raises(ValueError, match="bins must be"):
        klom(u, o, bins=0)
