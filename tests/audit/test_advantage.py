"""The SWAP-test advantage on known answers: identical distributions give 0 (interval covering 0), a model that kept
the data gives about 1, the swap cancels a difference between the two sets that is not membership, and a hand-worked
pair."""
from __future__ import annotations

import numpy as np
import pytest

from expunge.metrics import scaled_advantage, swap_advantage
from expunge.metrics.advantage import pair_advantages

K, N = 16, 60


def games(rng, forget_mean, test_mean, k=K, n=N):
    """Both games with membership scores N(forget_mean, 1) on each model's forget set and N(test_mean, 1) on its
    test set."""
    return (rng.normal(forget_mean, 1, (k, n)), rng.normal(test_mean, 1, (k, n)),
            rng.normal(forget_mean, 1, (k, n)), rng.normal(test_mean, 1, (k, n)))


@pytest.mark.parametrize("seed", range(3))
def test_identical_distributions_give_zero(seed):
    rng = np.random.default_rng(seed)
    a = swap_advantage(*games(rng, 0.0, 0.0), seed=seed)
    assert abs(a.value) < 0.05 and a.ci_low <= 0.0 <= a.ci_high
    assert a.n_pairs == K and a.per_pair.shape == (K,)


def test_kept_data_gives_about_one_and_scales_to_one():
    rng = np.random.default_rng(0)
    kept = swap_advantage(*games(rng, 5.0, 0.0))
    assert kept.value > 0.97 and kept.ci_low > 0.95 and kept.directions == (1, 1)
    assert scaled_advantage(kept, kept).value == pytest.approx(1.0)
    same = swap_advantage(*games(rng, 0.0, 0.0))
    scaled = scaled_advantage(same, kept)
    assert abs(scaled.value) < 0.06 and scaled.ci_low <= 0.0 <= scaled.ci_high


def test_half_way_lies_between_and_matches_the_gaussian_answer():
    """Unit Gaussians 1 apart: the best threshold's TPR − FPR is Φ(0.5) − Φ(−0.5) = 0.383."""
    rng = np.random.default_rng(1)
    half = swap_advantage(*games(rng, 1.0, 0.0, k=32, n=200))
    assert half.value == pytest.approx(0.383, abs=0.04)
    kept = swap_advantage(*games(rng, 5.0, 0.0, k=32, n=200))
    scaled = scaled_advantage(half, kept)
    assert scaled.value == pytest.approx(half.value / kept.value) and scaled.ci_low < scaled.value < scaled.ci_high


def test_the_swap_cancels_a_difference_that_is_not_membership():
    """Set A is harder than set B for every model alike (no membership signal): one game alone shows an advantage,
    the game and its swap together show none."""
    rng = np.random.default_rng(2)
    a_scores = lambda: rng.normal(-1.0, 1, (K, N))
    b_scores = lambda: rng.normal(0.0, 1, (K, N))
    first_a, first_b, second_b, second_a = a_scores(), b_scores(), b_scores(), a_scores()
    one_game = swap_advantage(first_a, first_b, first_a, first_b)        # the first game counted twice
    assert one_game.value > 0.3
    both = swap_advantage(first_a, first_b, second_b, second_a)
    assert abs(both.value) < 0.06 and both.ci_low <= 0.0 <= both.ci_high


def test_over_unlearning_is_seen_too():
    """Forget examples made less confident than unseen ones: the adversary says "forget" below its threshold."""
    a = swap_advantage(*games(np.random.default_rng(3), -3.0, 0.0))
    assert a.value > 0.8 and a.directions == (-1, -1)


def test_hand_worked_pair():
    # game 1: forget scores 3, 1 vs test 0, 2; game 2 (swapped): forget 2, 2 vs test 0, 0. Threshold 1.5:
    # game 1: P(≥ t | forget) = 1/2, P(≥ t | test) = 1/2 → 0; game 2: 1 − 0 = 1; the pair: ½ (0 + 1) = 0.5
    ff, ft, sf, st = (np.array([v], float) for v in ([3, 1], [0, 2], [2, 2], [0, 0]))
    assert pair_advantages((ff, ft, sf, st), np.array([1.5, 2.5, np.inf]))[0] == pytest.approx([0.5, 0.25, 0.0])


@pytest.mark.parametrize("arrays, message", [
    ((np.zeros((1, 3)),) * 4, "model pairs"),
    ((np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4))), "same two sets"),
    ((np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.full((2, 3), np.nan)), "finite"),
])
def test_bad_input(arrays, message):
    with pytest.raises(ValueError, match=message):
        swap_advantage(*arrays)
