"""Per-example scores: hand computations, agreement with the probability-space formulas, stability."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from expunge.metrics import scores as S


def test_modified_entropy_matches_hand_computation():
    p = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    got = S.modified_entropy(np.log(p), np.array([0, 1]))
    want0 = -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    want1 = -0.8 * math.log(0.2) - 0.7 * math.log(0.3) - 0.1 * math.log(0.9)
    assert got == pytest.approx([want0, want1], rel=1e-12)


def test_scores_match_probability_formulas():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(50, 7))
    y = rng.integers(0, 7, size=50)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    py = p[np.arange(50), y]
    others = np.ones_like(p, bool)
    others[np.arange(50), y] = False
    assert S.loss(z, y) == pytest.approx(F.cross_entropy(torch.tensor(z), torch.tensor(y), reduction="none").numpy())
    assert S.confidence(z, y) == pytest.approx(py, rel=1e-12)
    assert S.entropy(z) == pytest.approx(-(p * np.log(p)).sum(1), rel=1e-10)
    mentr = -(1 - py) * np.log(py) - np.where(others, p * np.log(1 - p), 0).sum(1)
    assert S.modified_entropy(z, y) == pytest.approx(mentr, rel=1e-9)
    phi = np.log(py) - np.log(1 - py)
    assert S.logit_scaled_confidence(z, y) == pytest.approx(phi, rel=1e-9, abs=1e-12)
    assert np.array_equal(S.margin(z, y), S.logit_scaled_confidence(z, y))


@pytest.mark.parametrize("fn", [S.loss, S.confidence, S.entropy, S.modified_entropy, S.logit_scaled_confidence])
def test_confident_models_give_finite_scores(fn):
    eps = 1e-12
    z = np.array([[math.log(1 - eps), math.log(eps / 2), math.log(eps / 2)],   # p_y = 1 - 1e-12
                  [1000.0, 0.0, 0.0],                                          # p_y rounds to 1
                  [0.0, 1000.0, -5.0]])                                        # confidently wrong
    y = np.array([0, 0, 0])
    out = fn(z, y)
    assert np.isfinite(out).all()


def test_confident_values_are_accurate():
    eps = 1e-12
    z = np.array([[math.log(1 - eps), math.log(eps)], [0.0, 1000.0]])
    y = np.array([0, 0])
    assert S.loss(z, y)[0] == pytest.approx(eps, rel=1e-6)
    assert S.logit_scaled_confidence(z, y) == pytest.approx([math.log((1 - eps) / eps), -1000.0], rel=1e-9)
    # m-entropy of a confidently wrong prediction: -(1 - p_0) log p_0 - p_1 log(1 - p_1) = 1000 + 1000
    assert S.modified_entropy(z, y)[1] == pytest.approx(2000.0, rel=1e-9)
    assert S.modified_entropy(z, y)[0] == pytest.approx(-2 * eps * math.log(1 - eps), rel=1e-4)


def test_ensemble_shapes_and_torch_input():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 6, 3))  # [K, N, C]
    y = rng.integers(0, 3, size=6)
    batched = S.logit_scaled_confidence(torch.tensor(z, dtype=torch.float32), torch.tensor(y))
    assert batched.shape == (4, 6) and batched.dtype == np.float64
    for k in range(4):
        assert batched[k] == pytest.approx(S.logit_scaled_confidence(z[k], y), rel=1e-6)


def test_membership_score_orientation():
    z = np.array([[5.0, 0.0], [0.5, 0.0]])  # example 0 fits better: lower loss, entropy, m-entropy
    y = np.array([0, 0])
    for name in S.SCORES:
        s = S.membership_score(name, z, y)
        assert s[0] > s[1], name
    with pytest.raises(ValueError, match="unknown score"):
        S.membership_score("hinge", z, y)


def test_bad_inputs_raise():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        S.loss(z, np.array([0, 1, 4]))
    with pytest.raises(TypeError, match="labels must be integers"):
        S.loss(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="C >= 2"):
        S.loss(np.zeros((3, 1)), np.zeros(3, int))
    with pytest.raises(ValueError, match="do not match"):
        S.loss(z, np.zeros(5, int))
    with pytest.raises(ValueError, match="NaN"):
        S.entropy(np.full((2, 2), np.nan))
