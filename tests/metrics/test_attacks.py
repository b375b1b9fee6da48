"""Threshold attacks, LiRA and RMIA on synthetic outputs with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm

from expunge.metrics import lira, rmia, roc_auc, threshold_attack, tune_rmia_a
from expunge.metrics.attacks import RMIA_A_GRID


def _logits(rng, n, boost_mean, classes=10):
    z = rng.normal(size=(n, classes))
    y = rng.integers(0, classes, size=n)
    z[np.arange(n), y] += rng.normal(boost_mean, 1.0, size=n)
    return z, y


@pytest.mark.parametrize("score", ["loss", "confidence", "entropy", "modified_entropy"])
def test_threshold_attacks_tell_memorised_from_unseen(score):
    rng = np.random.default_rng(0)
    is_member = rng.random(2000) < 0.5
    z_in, y_in = _logits(rng, 2000, 8.0)    # memorised members: confident on the true class
    z_out, y_out = _logits(rng, 2000, 1.0)
    memorised = np.where(is_member[:, None], z_in, z_out), np.where(is_member, y_in, y_out)
    assert threshold_attack(*memorised, is_member, score=score).auc > 0.9
    unseen = _logits(rng, 2000, 1.0)
    assert abs(threshold_attack(*unseen, is_member, score=score).auc - 0.5) < 0.05
    with pytest.raises(ValueError, match="unknown threshold-attack score"):
        threshold_attack(*unseen, is_member, score="margin")


def _shadow_world(rng, n=4000, k=64, shift=1.0, sd_in=1.0, sd_out=1.0):
    """Per-example φ ~ N(μ_n + shift, sd_in) if IN else N(μ_n, sd_out), with μ_n spread widely across examples."""
    mu = rng.normal(0, 3, n)

    def draw(member):
        return np.where(member, rng.normal(mu + shift, sd_in), rng.normal(mu, sd_out))

    mask = rng.random((k, n)) < 0.5
    shadow = np.stack([draw(m) for m in mask])
    truth = rng.random(n) < 0.5
    return mu, mask, shadow, truth, draw(truth)


@pytest.mark.parametrize("kw", [{}, {"fix_variance": True}, {"online": False}, {"online": False, "fix_variance": True}])
def test_lira_recovers_the_optimal_likelihood_ratio_test(kw):
    rng = np.random.default_rng(0)
    mu, mask, shadow, truth, target = _shadow_world(rng)
    # equal variances: the optimal per-example test thresholds φ − μ_n, whose AUC is Φ(shift / (σ√2))
    optimum = norm.cdf(1.0 / np.sqrt(2))
    s = lira(target, shadow, mask, **kw)
    assert abs(roc_auc(s[truth], s[~truth]) - optimum) < 0.025
    assert roc_auc(target[truth], target[~truth]) < optimum - 0.1   # a global threshold is far weaker


def test_online_lira_with_unequal_variances_matches_the_true_likelihood_ratio():
    rng = np.random.default_rng(1)
    mu, mask, shadow, truth, target = _shadow_world(rng, shift=0.5, sd_in=0.5, sd_out=1.5)
    true_lr = norm.logpdf(target, mu + 0.5, 0.5) - norm.logpdf(target, mu, 1.5)
    best = roc_auc(true_lr[truth], true_lr[~truth])
    s = lira(target, shadow, mask)
    assert roc_auc(s[truth], s[~truth]) > best - 0.03


def test_fixed_variance_helps_with_few_shadow_models():
    rng = np.random.default_rng(0)
    _, mask, shadow, truth, target = _shadow_world(rng, k=4)
    auc = {fv: roc_auc(*(lambda s: (s[truth], s[~truth]))(lira(target, shadow, mask, fix_variance=fv)))
           for fv in (False, True)}
    assert auc[True] > auc[False] + 0.02


def test_lira_handles_examples_without_in_or_out_shadows():
    """Examples no shadow trained on (or all did) take μ from the other group and the average IN−OUT shift."""
    rng = np.random.default_rng(3)
    mu, mask, shadow, truth, target = _shadow_world(rng, n=2000, k=16)
    mask[:, :500] = False
    shadow[:, :500] = rng.normal(mu[:500], 1.0, size=(16, 500))   # consistent with "all OUT"
    mask[:, 500:1000] = True
    shadow[:, 500:1000] = rng.normal(mu[500:1000] + 1.0, 1.0, size=(16, 500))
    for online in (True, False):
        s = lira(target, shadow, mask, online=online)
        assert np.isfinite(s).all()
        for part in (slice(0, 500), slice(500, 1000)):
            assert roc_auc(s[part][truth[part]], s[part][~truth[part]]) > norm.cdf(1 / np.sqrt(2)) - 0.06


def test_lira_scores_several_targets_and_rejects_bad_input():
    rng = np.random.default_rng(4)
    _, mask, shadow, truth, target = _shadow_world(rng, n=200, k=8)
    both = lira(np.stack([target, target + 1]), shadow, mask)
    assert both.shape == (2, 200) and np.allclose(both[0], lira(target, shadow, mask))
    with pytest.raises(ValueError, match="IN mask must have shape"):
        lira(target, shadow, mask[:, :10])
    with pytest.raises(ValueError, match="needs OUT"):
        lira(target, shadow, np.ones_like(mask))
    with pytest.raises(ValueError, match="needs IN"):
        lira(target, shadow, np.zeros_like(mask))
    assert np.isfinite(lira(target, shadow, np.zeros_like(mask), online=False)).all()  # pure offline setting
    with pytest.raises(TypeError, match="boolean"):
        lira(target, shadow, mask.astype(int))


def test_rmia_hand_computed():
    tx, rx = np.array([0.9, 0.2]), np.array([[0.6, 0.2]])
    tz, rz = np.array([0.5, 0.4, 0.1]), np.array([[0.2, 0.6, 0.2]])
    # a = 0.5: P(x) = 0.7, 0.4 -> ratios 1.286, 0.5; P(z) = 0.4, 0.7, 0.4 -> ratios 1.25, 0.571, 0.25
    assert rmia(tx, rx, tz, rz, a=0.5) == pytest.approx([1.0, 1 / 3])
    assert rmia(tx, rx, tz, rz, a=0.5, gamma=2.0) == pytest.approx([2 / 3, 0.0])
    # an IN reference is inverted to P_OUT = (P_IN + a - 1) / a: 0.8 -> 0.6
    inverted = rmia(tx, np.array([[0.8, 0.2]]), tz, rz, reference_in=np.array([[True, False]]), a=0.5)
    assert inverted == pytest.approx([1.0, 1 / 3])
    with pytest.raises(ValueError, match="probabilities"):
        rmia(tx + 1, rx, tz, rz)
    with pytest.raises(ValueError, match="a must lie"):
        rmia(tx, rx, tz, rz, a=1.5)


def test_rmia_with_one_reference_model_beats_a_global_threshold():
    rng = np.random.default_rng(0)
    n, m = 2000, 2000
    ease = rng.normal(1, 2, n + m)   # per-example difficulty, shared by all models

    def model(members):
        return expit(ease + 2.0 * members + rng.normal(0, 0.5, n + m))

    truth = np.r_[rng.random(n) < 0.5, np.zeros(m, bool)]
    target = model(truth)
    refs = np.stack([model(np.zeros(n + m, bool)) for _ in range(2)])
    s = rmia(target[:n], refs[:1, :n], target[n:], refs[:1, n:])
    t = truth[:n]
    assert roc_auc(s[t], s[~t]) > roc_auc(target[:n][t], target[:n][~t]) + 0.1
    halves = rng.random((4, n)) < 0.5
    shadows = np.stack([model(np.r_[h, np.zeros(m, bool)]) for h in halves])
    tuned = tune_rmia_a(shadows[:, :n], halves, shadows[:, n:])
    # the chosen a is the one whose RMIA best attacks shadow model 0 with the other shadows as references
    aucs = []
    for a in RMIA_A_GRID:
        s0 = rmia(shadows[0, :n], shadows[1:, :n], shadows[0, n:], shadows[1:, n:], reference_in=halves[1:], a=a)
        aucs.append(roc_auc(s0[halves[0]], s0[~halves[0]]))
    assert max(aucs) - min(aucs) > 0.01                 # the choice matters here
    assert tuned == RMIA_A_GRID[int(np.argmax(aucs))] and tuned < 1.0
