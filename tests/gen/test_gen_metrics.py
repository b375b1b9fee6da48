"""Generation metrics against known answers: the Fréchet distance of identical feature sets is 0, of Gaussians it
matches the closed form (exactly for given diagonal covariances, within sampling error for large samples, and
scipy's matrix square root for full covariances); generation and unlearning accuracy count what they say."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from expunge.gen.metrics import (frechet_distance, frechet_distance_gaussians, generation_accuracy,
                                 mean_and_covariance, unlearning_accuracy)


def test_frechet_distance_of_identical_sets_is_zero_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(torch.from_numpy(a), a[rng.permutation(200)]) == pytest.approx(0.0, abs=1e-8)
    b = rng.normal(size=(150, 16)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, b) > 1.0


def test_population_formula_on_diagonal_covariances_is_exact():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))   # 13 + (1 + 1 + 7.5625 - 0)
    got = frechet_distance_gaussians(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(13 + 1 + 1 + (9 + 0.25 - 3))


def test_shifted_gaussians_match_the_closed_form_from_large_samples():
    rng = np.random.default_rng(1)
    d = 4
    mu1, mu2 = np.zeros(d), np.array([1.0, -1.0, 0.5, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([2.0, 0.5, 0.5, 3.0])
    a = rng.normal(size=(200_000, d)) * np.sqrt(s1) + mu1
    b = rng.normal(size=(200_000, d)) * np.sqrt(s2) + mu2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.03)
    # a pure shift: the covariance term vanishes and the distance is the squared shift
    c = rng.normal(size=(200_000, d)) + mu2
    assert frechet_distance(rng.normal(size=(200_000, d)), c) == pytest.approx(np.sum(mu2 ** 2), abs=0.03)


def test_full_covariances_agree_with_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    m1, m2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(6), m2 @ m2.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    root = scipy_linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert frechet_distance_gaussians(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_singular_covariances_stay_finite_and_non_negative():
    a = np.zeros((5, 8))                                   # fewer rows than dimensions, and constant
    b = np.ones((5, 8))
    assert frechet_distance(a, b) == pytest.approx(8.0)
    mu, cov = mean_and_covariance(np.arange(6.0).reshape(3, 2))
    assert mu.tolist() == [2.0, 3.0] and cov == pytest.approx(np.full((2, 2), 4.0))   # ddof=1


def test_frechet_distance_refuses_bad_features():
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="width"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((4, 3), np.nan), np.zeros((4, 3)))


def test_generation_and_unlearning_accuracy_count_judged_labels():
    conditioned = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    judged = torch.tensor([0, 0, 0, 1, 1, 0, 2, 1])
    assert generation_accuracy(judged, conditioned) == {0: 75.0, 1: 50.0, 2: 50.0}
    assert unlearning_accuracy(judged, conditioned, [1]) == 50.0
    assert unlearning_accuracy(judged, conditioned, [0, 2]) == pytest.approx(100 * 2 / 6)
    with pytest.raises(ValueError, match="forgotten classes"):
        unlearning_accuracy(judged, conditioned, [5])
    with pytest.raises(ValueError, match="one of each"):
        generation_accuracy(judged[:3], conditioned)
