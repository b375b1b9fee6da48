"""Certified removal for logistic regression (Guo et al., ICML 2020) and exact ridge removal, against retraining."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from expunge.exact.certified import CertifiedLogistic, RidgeRemoval


@pytest.fixture(scope="module")
def digits_3_vs_8():
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.isin(d.target, [3, 8])
    X = d.data[keep].astype(np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True), d.target[keep]


def retrained(model: CertifiedLogistic) -> torch.Tensor:
    """Exact retraining on the remaining rows with the model's current perturbation b."""
    return model.minimise(model.b)


def test_training_reaches_the_minimum_and_classifies(digits_3_vs_8):
    X, y = digits_3_vs_8
    m = CertifiedLogistic(lam=1e-2, sigma=0.1, seed=0).fit(X, y)
    assert float(m.gradient(m.w).norm()) < 1e-8
    assert m.score(X, y) > 0.9
    assert set(m.predict(X).tolist()) == {3, 8}


@pytest.mark.parametrize("row", [0, 7, 100])
def test_one_newton_step_lands_next_to_retraining(digits_3_vs_8, row):
    X, y = digits_3_vs_8
    m = CertifiedLogistic(lam=1e-2, sigma=0.1, seed=0).fit(X, y)
    w_before = m.w.clone()
    state = m.remove([row])
    assert state.retrained == 0 and state.removed == 1 and state.remaining == len(X) - 1
    exact = retrained(m)
    error, moved = float((m.w - exact).norm()), float((w_before - exact).norm())
    assert error < 1e-4 and error < 0.01 * moved, (error, moved)
    # the accumulated data-dependent bound really bounds the gradient residual
    assert float(m.gradient(m.w).norm()) <= state.bound
    assert state.certified and state.budget == pytest.approx(0.1 / np.sqrt(2 * np.log(1.5 / 1e-4)))


def test_the_budget_forces_a_retrain_that_is_exact(digits_3_vs_8):
    X, y = digits_3_vs_8
    m = CertifiedLogistic(lam=1e-2, sigma=0.01, seed=0).fit(X, y)
    retrains, bounds = 0, []
    for row in range(30):
        state = m.remove([row])
        retrains += state.retrained
        bounds.append(state.bound)
        assert state.bound <= state.budget
    assert retrains >= 1, "a small budget must trigger retraining"
    assert min(bounds) == 0.0                       # a retrain resets the accumulated bound
    assert float(m.gradient(m.w).norm()) <= max(m.spent, 1e-8)


def test_removal_is_repeatable_and_checks_requests(digits_3_vs_8):
    X, y = digits_3_vs_8
    a = CertifiedLogistic(lam=1e-2, seed=3).fit(X, y)
    b = CertifiedLogistic(lam=1e-2, seed=3).fit(X, y)
    a.remove([1, 2]), b.remove([1, 2])
    assert torch.equal(a.w, b.w)
    with pytest.raises(ValueError, match="already removed"):
        a.remove([2])
    with pytest.raises(ValueError, match="out of range"):
        a.remove([len(X)])
    with pytest.raises(ValueError, match="norm <= 1"):
        CertifiedLogistic().fit(X * 3, y)
    with pytest.raises(ValueError, match="binary"):
        CertifiedLogistic().fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ValueError, match="delta"):
        CertifiedLogistic(delta=2.0)


def ridge_solution(X, y, lam):
    A = np.hstack([X, np.ones((len(X), 1))])
    P = lam * np.eye(A.shape[1])
    P[-1, -1] = 0
    return np.linalg.solve(A.T @ A + P, A.T @ y)


def test_ridge_removal_matches_retraining():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    r = RidgeRemoval(lam=0.5).fit(X, y)
    gone = list(range(0, 120, 4))
    r.remove(gone[:10]).remove(gone[10:])
    keep = np.setdiff1d(np.arange(len(X)), gone)
    exact = ridge_solution(X[keep], y[keep], 0.5)
    got = np.append(r.coef_.numpy(), float(r.intercept_))
    assert np.abs(got - exact).max() / np.abs(exact).max() < 1e-10
    assert np.allclose(r.predict(X[:5]).numpy(), np.hstack([X[:5], np.ones((5, 1))]) @ exact)


def test_ridge_multi_output_and_without_intercept():
    g = np.random.default_rng(0)
    X, Y = g.normal(size=(80, 5)), g.normal(size=(80, 2))
    r = RidgeRemoval(lam=1.0, fit_intercept=False).fit(X, Y).remove([3, 50])
    keep = np.setdiff1d(np.arange(80), [3, 50])
    exact = np.linalg.solve(X[keep].T @ X[keep] + np.eye(5), X[keep].T @ Y[keep])
    assert r.coef_.shape == (5, 2)
    assert np.abs(r.coef_.numpy() - exact).max() < 1e-12
