"""IAM on known answers: the interpolation on synthetic signals gives hand-computed values; on digits with flipped
labels an oracle's forget examples look as unseen as test examples while the original, which memorised them, is
judged incomplete; ``evaluate(..., evidence="iam")`` gives the same numbers and leaves the evidence tier alone."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import expunge
from expunge.audit.iam import (INCOMPLETE_BELOW, IamResult, completeness, gumbel_cdf, gumbel_signal, iam,
                               interpolated_membership)
from expunge.data import ArrayDataset, digits

GUMBEL_CDF_AT_MEAN = math.exp(-math.exp(-0.5772156649015329))     # 0.5704: a Gumbel's CDF at its mean


def test_noise_free_membership_is_the_linear_placement():
    # midpoints 0.05, 0.15, ..., 0.95 between generalisation 0 and fit 1
    got = interpolated_membership([0.3, 0.35, -1.0, 1.5, 0.0], 0.0, 1.0, steps=10, std=0.0)
    # 0.3: three points below; 0.35: three below and one tied (1/2); below the path 0; beyond it 1
    assert got.tolist() == pytest.approx([0.3, 0.35, 0.0, 1.0, 0.0], abs=1e-12)
    # the path runs either way between its ends: placement on [2, 4] of 3.5 is 3/4
    assert interpolated_membership(3.5, 2.0, 4.0, steps=4, std=0.0).tolist() == pytest.approx([0.75])


def test_gumbel_smoothing_matches_the_hand_computed_cdf():
    # two points (m = 1/4, 3/4) on the path 0 → 2: c = 0.5, 1.5; signal 1; σ = 1
    beta = math.sqrt(6) / math.pi
    cdf = lambda x, mean: math.exp(-math.exp(-(x - (mean - 0.5772156649015329 * beta)) / beta))
    want = (cdf(1.0, 0.5) + cdf(1.0, 1.5)) / 2
    assert interpolated_membership(1.0, 0.0, 2.0, steps=2, std=1.0)[0] == pytest.approx(want, abs=1e-12)
    # β = √6/π = 0.7797, μ = c − γβ:
    # F(1 | 0.5) = exp(−exp(−1.2185)) = 0.7440, F(1 | 1.5) = exp(−exp(0.0641)) = 0.3443
    assert want == pytest.approx((0.7440 + 0.3443) / 2, abs=1e-4)
    assert gumbel_cdf(3.0, 3.0, 0.7) == pytest.approx(GUMBEL_CDF_AT_MEAN, abs=1e-12)


def test_default_spread_is_that_of_the_points_across_examples():
    # one point (m = 1/2): c = [1, 1.5] for generalisation ends [0, 1] and fit 2, spread 0.25; each signal at its
    # point's mean scores the Gumbel's CDF at its mean; signals far above and below score 1 and 0
    got = interpolated_membership([1.0, 1.5], [0.0, 1.0], 2.0, steps=1)
    assert got.tolist() == pytest.approx([GUMBEL_CDF_AT_MEAN] * 2, abs=1e-12)
    far = interpolated_membership([10.0, -10.0], [0.0, 1.0], 2.0, steps=1)
    assert far.tolist() == pytest.approx([1.0, 0.0], abs=1e-9)


def test_gumbel_map_is_bounded_and_increasing():
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    g = gumbel_signal(p)
    assert np.all(np.diff(g) > 0)
    assert g[-1] == pytest.approx(-math.log(0.1 - math.log(1 + 1e-5)))
    assert g[0] == pytest.approx(-math.log(0.1 - math.log(1e-5)))


def test_examples_without_a_path_are_not_measured():
    # the shadow predicts the second example as confidently as it fits its training data: no path
    c, fit, gen = completeness(model_p=[0.2, 0.99], shadow_p=[0.2, 0.99], shadow_fit_p=[0.99, 0.99])
    assert fit == pytest.approx(gumbel_signal(0.99)) and np.isnan(c[1]) and np.isfinite(c[0])
    s = IamResult(c, fit, gen, test_completeness=np.array([0.5, np.nan])).summary()
    assert s["iam_n_measured"] == 1 and s["iam_n_forget"] == 2
    assert s["iam_relative_completeness"] == pytest.approx(min(1.0, c[0] / 0.5))
    assert s["iam_incomplete_share"] == float(c[0] < INCOMPLETE_BELOW)


@pytest.fixture(scope="module")
def noisy_digits():
    """600 digits with 20% of the labels flipped; an MLP memorises them (forget accuracy 100%), its oracle does
    not (about 65%)."""
    train, test = digits(seed=0)
    n = 600
    g = torch.Generator().manual_seed(0)
    y = train.y[:n].clone()
    flip = torch.rand(n, generator=g) < 0.2
    y[flip] = (y[flip] + torch.randint(1, 10, (int(flip.sum()),), generator=g)) % 10
    train = ArrayDataset(train.x[:n], y, task="classification", name="noisy-digits/train")
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    original = expunge.train(expunge.model("mlp", train, hidden=[256]), train, epochs=150, lr=0.1, seed=0)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return forget, retain, test, original, oracle


def test_oracle_looks_unseen_and_the_original_incomplete(noisy_digits):
    forget, retain, test, original, oracle = noisy_digits
    o = iam(oracle, forget=forget, retain=retain, test=test, seed=0).summary()
    k = iam(original, forget=forget, retain=retain, test=test, seed=0).summary()
    assert o["iam_n_measured"] >= 20 and o["iam_n_forget"] == len(forget)
    # tolerance: the oracle's forget examples score within 0.1 of unseen test examples (relative >= 0.9)
    assert o["iam_relative_completeness"] >= 0.9
    assert o["iam_incomplete_share"] <= 0.4
    # the original kept them: clearly lower completeness, most judged incomplete
    assert k["iam_completeness_mean"] <= o["iam_completeness_mean"] - 0.25
    assert k["iam_relative_completeness"] <= 0.6
    assert k["iam_incomplete_share"] >= 0.8


def test_evaluate_runs_iam_and_keeps_the_tier(noisy_digits):
    forget, retain, test, original, _ = noisy_digits
    scores = expunge.evaluate(original, forget=forget, retain=retain, test=test, evidence="iam", seed=3)
    direct = iam(original, forget=forget, retain=retain, test=test, seed=3).summary()
    assert {k: scores[k] for k in direct} == direct          # same seed, same shadow, bitwise the same numbers
    assert scores["evidence_tier"] == 0.0


def test_bad_iam_requests_are_refused_before_work(noisy_digits):
    forget, retain, test, original, _ = noisy_digits
    with pytest.raises(ValueError, match="evidence must be an expunge.audit.AuditResult or 'iam'"):
        expunge.evaluate(original, forget=forget, retain=retain, evidence="lira")
    with pytest.raises(ValueError, match="shadow_share must be a number in"):
        iam(original, forget=forget, retain=retain, shadow_share=1.5)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        interpolated_membership([0.1], 0.0, 1.0, steps=0)
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))      # never trained by expunge
    with pytest.raises(ValueError, match="recorded recipe"):
        expunge.evaluate(bare, forget=forget, retain=retain, test=test, evidence="iam")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        iam(original, forget=forget, retain=retain, steps=0)
    x = torch.randn(40, 3)
    reg = ArrayDataset(x, x.sum(1, keepdim=True), task="regression", name="toy-regression")
    f, r = expunge.split_forget(reg, fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="evidence='iam' scores classifiers"):
        expunge.evaluate(torch.nn.Linear(3, 1), forget=f, retain=r, evidence="iam")
