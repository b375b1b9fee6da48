"""Certified removal for L2-regularised logistic regression, and exact removal for ridge regression.

Paper: Guo, Goldstein, Hannun, van der Maaten, "Certified Data Removal from Machine Learning Models", ICML 2020.
Reference: https://github.com/facebookresearch/certified-removal (``test_removal.py``).

:class:`CertifiedLogistic` (binary labels, features scaled so every row has L2 norm <= 1, as the theory needs):

- Training minimises L_b(w; D) = Σ_i log(1 + exp(−y_i wᵀx_i)) + (λn/2)‖w‖² + bᵀw with b ~ N(0, σ²I) drawn under
  ``seed`` (objective perturbation), by damped Newton's method in float64 until the gradient norm is below
  ``tol``·n.
- Removing x_i takes one Newton step from the current weights: w ← w + H⁻¹Δ with Δ = ∇ℓ(wᵀx_i, y_i) + λw (the
  removed point's loss gradient plus its share of the regulariser) and H the Hessian of L on the remaining data.
- Each step adds its data-dependent gradient-residual bound (Corollary 1) γ·‖X‖₂·‖H⁻¹Δ‖·‖X H⁻¹Δ‖ with γ = 1/4
  and X the remaining data to a running total β. The removal is (ε, δ)-certified while β <= σε/c with
  c = √(2 log(1.5/δ)); a removal that would exceed the budget retrains from scratch on the remaining data instead
  (with a fresh b) and resets β to 0.
- Removals are applied one at a time in the order given, as in the reference.

:class:`RidgeRemoval`: ridge regression min ‖Xw + w0 − y‖² + λ‖w‖² (intercept not penalised) keeps
(XᵀX + λI)⁻¹ and Xᵀy; removing a row is a Sherman–Morrison downdate, exact up to rounding (the least-squares
Newton step has zero gradient residual), so no noise or budget is needed.

Deviations from the reference: the reference trains with L-BFGS in float32 and estimates ‖X‖₂ by power iteration;
here training is Newton in float64 and ‖X‖₂ is the square root of the exact top eigenvalue of the downdated XᵀX
(d is small).
Multi-class one-vs-rest is not provided; train one binary model per class.

Defaults: λ 1e-2, σ 1, ε 1, δ 1e-4. Larger σ buys more removals before a retrain at some cost in accuracy; larger
λ makes each Newton step closer to retraining. On digits 3-vs-8 (357 rows, σ 1), ‖w_newton − w_retrain‖ after one
removal is 1e-5–5e-5 at λ 1e-3, 2e-6–2e-5 at λ 1e-2 and 3e-7–4e-7 at λ 1e-1; 100 successive removals trigger
23, 4 and 0 retrains.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

GAMMA = 0.25   # Lipschitz constant of the logistic loss' second derivative used by the paper's bound


@dataclass(frozen=True)
class RemovalState:
    """The budget after a ``remove`` call."""

    removed: int          # examples removed since fit, in total
    remaining: int
    bound: float          # β: accumulated gradient-residual bound since the last (re)training
    budget: float         # σε/c
    retrained: int        # retrainings this call triggered
    seconds: float

    @property
    def certified(self) -> bool:
        return self.bound <= self.budget


def _matrix(X: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(X.values if hasattr(X, "values") else X).to(torch.float64)
    if t.ndim != 2 or len(t) == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array (rows x features); got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} contains NaN or Inf")
    return t


def _indices(indices: Any, alive: torch.Tensor) -> list[int]:
    idx = [int(i) for i in torch.as_tensor(indices).reshape(-1).tolist()]
    n = len(alive)
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"indices out of range for {n} training rows: {bad[:5]}")
    if len(set(idx)) != len(idx):
        raise ValueError("duplicate indices in the removal request")
    gone = [i for i in idx if not bool(alive[i])]
    if gone:
        raise ValueError(f"row(s) {gone[:5]} were already removed")
    if len(idx) >= int(alive.sum()):
        raise ValueError("the removal would leave no training data")
    return idx


class CertifiedLogistic:
    """Certified-removal logistic regression: ``CertifiedLogistic(lam=1e-2, sigma=1.0, epsilon=1.0,
    delta=1e-4).fit(X, y)``, then ``.remove(indices)`` (positions in the ``X`` given to ``fit``)."""

    def __init__(self, *, lam: float = 1e-2, sigma: float = 1.0, epsilon: float = 1.0, delta: float = 1e-4,
                 seed: int = 0, tol: float = 1e-10, max_iter: int = 100):
        for name, v in (("lam", lam), ("sigma", sigma), ("epsilon", epsilon), ("tol", tol)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"CertifiedLogistic: {name}={v!r} is not allowed; expected a positive number")
        if not 0 < delta < 1:
            raise ValueError(f"CertifiedLogistic: delta={delta!r} is not allowed; expected a number in (0, 1)")
        self.lam, self.sigma, self.epsilon, self.delta = float(lam), float(sigma), float(epsilon), float(delta)
        self.seed, self.tol, self.max_iter = int(seed), float(tol), int(max_iter)
        self._gen = torch.Generator().manual_seed(self.seed)

    # -- the (ε, δ) budget ------------------------------------------------------------------------------------
    @property
    def budget(self) -> float:
        """σε/c, c = √(2 log(1.5/δ)): the largest accumulated gradient residual the noise can mask."""
        return self.sigma * self.epsilon / math.sqrt(2 * math.log(1.5 / self.delta))

    # -- training ---------------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> "CertifiedLogistic":
        X = _matrix(X, "X")
        norms = X.norm(dim=1)
        if float(norms.max()) > 1 + 1e-9:
            raise ValueError(f"every row of X must have L2 norm <= 1 for the removal guarantee; the largest is "
                             f"{float(norms.max()):.3g}. Scale rows first, e.g. X / ||X||_row")
        labels = torch.as_tensor(y).reshape(-1)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)} labels")
        classes = torch.unique(labels)
        if len(classes) != 2:
            raise ValueError(f"CertifiedLogistic is binary; y has {len(classes)} distinct labels "
                             f"({classes[:5].tolist()}). Train one model per class for more")
        self.classes_ = classes
        self.X, self.y = X, torch.where(labels == classes[1], 1.0, -1.0).to(torch.float64)
        self.alive = torch.ones(len(X), dtype=torch.bool)
        self._K = X.T @ X
        self._retrain()
        self.removed = 0
        return self

    def _retrain(self) -> None:
        self.b = self.sigma * torch.randn(self.X.shape[1], generator=self._gen, dtype=torch.float64)
        self.w = self.minimise(self.b)
        self.spent = 0.0

    def objective(self, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """L_b(w; remaining data)."""
        X, y = self.X[self.alive], self.y[self.alive]
        b = self.b if b is None else b
        return F.softplus(-y * (X @ w)).sum() + self.lam * len(X) / 2 * w.dot(w) + b.dot(w)

    def gradient(self, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """∇L_b(w; remaining data); its norm at the current weights is the true gradient residual."""
        X, y = self.X[self.alive], self.y[self.alive]
        b = self.b if b is None else b
        return X.T @ (-y * torch.sigmoid(-y * (X @ w))) + self.lam * len(X) * w + b

    def hessian(self, w: torch.Tensor) -> torch.Tensor:
        X = self.X[self.alive]
        s = torch.sigmoid(X @ w)
        return (X.T * (s * (1 - s))) @ X + self.lam * len(X) * torch.eye(X.shape[1], dtype=torch.float64)

    def minimise(self, b: torch.Tensor) -> torch.Tensor:
        """argmin_w L_b(w; remaining data) by damped Newton."""
        w = torch.zeros(self.X.shape[1], dtype=torch.float64)
        for _ in range(self.max_iter):
            g = self.gradient(w, b)
            if float(g.norm()) <= self.tol * max(1, int(self.alive.sum())):
                break
            step = torch.linalg.solve(self.hessian(w), g)
            t, f0 = 1.0, float(self.objective(w, b))
            while float(self.objective(w - t * step, b)) > f0 - 0.25 * t * float(g.dot(step)) and t > 1e-8:
                t /= 2
            w = w - t * step
        return w

    # -- removal ----------------------------------------------------------------------------------------------
    def remove(self, indices: Sequence[int] | int) -> RemovalState:
        """Remove training rows one at a time (Newton step + residual bound; retrain when the budget would be
        exceeded). Returns the budget state."""
        idx = _indices(indices, self.alive)
        start, retrained = time.perf_counter(), 0
        for i in idx:
            x, yi = self.X[i], self.y[i]
            self.alive[i] = False
            self._K -= torch.outer(x, x)
            delta = x * (-yi * torch.sigmoid(-yi * x.dot(self.w))) + self.lam * self.w
            step = torch.linalg.solve(self.hessian(self.w), delta)
            X_norm = math.sqrt(max(float(torch.linalg.eigvalsh(self._K)[-1]), 0.0))
            bound = GAMMA * X_norm * float(step.norm()) * float((self.X[self.alive] @ step).norm())
            self.removed += 1
            if self.spent + bound > self.budget:
                self._retrain()
                retrained += 1
            else:
                self.w = self.w + step
                self.spent += bound
        return self.state(retrained, time.perf_counter() - start)

    def state(self, retrained: int = 0, seconds: float = 0.0) -> RemovalState:
        return RemovalState(self.removed, int(self.alive.sum()), self.spent, self.budget, retrained, seconds)

    # -- prediction -------------------------------------------------------------------------------------------
    def decision_function(self, X: Any) -> torch.Tensor:
        return _matrix(X, "X") @ self.w

    def predict(self, X: Any) -> torch.Tensor:
        return torch.where(self.decision_function(X) > 0, self.classes_[1], self.classes_[0])

    def score(self, X: Any, y: Any) -> float:
        return float((self.predict(X) == torch.as_tensor(y).reshape(-1)).double().mean())


class RidgeRemoval:
    """Ridge regression with exact row removal: ``RidgeRemoval(lam=1.0).fit(X, y)``, ``.remove(indices)``."""

    def __init__(self, *, lam: float = 1.0, fit_intercept: bool = True):
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
            raise ValueError(f"RidgeRemoval: lam={lam!r} is not allowed; expected a positive number")
        self.lam, self.fit_intercept = float(lam), bool(fit_intercept)

    def _design(self, X: Any) -> torch.Tensor:
        X = _matrix(X, "X")
        return torch.cat([X, torch.ones(len(X), 1, dtype=torch.float64)], 1) if self.fit_intercept else X

    def fit(self, X: Any, y: Any) -> "RidgeRemoval":
        A = self._design(X)
        Y = torch.as_tensor(y).to(torch.float64)
        if len(Y) != len(A):
            raise ValueError(f"X has {len(A)} rows but y has {len(Y)}")
        self._vector = Y.ndim == 1
        Y = Y.reshape(len(Y), -1)
        penalty = torch.full((A.shape[1],), self.lam, dtype=torch.float64)
        if self.fit_intercept:
            penalty[-1] = 0.0
        self.A, self.Y = A, Y
        self.alive = torch.ones(len(A), dtype=torch.bool)
        self._inv = torch.linalg.inv(A.T @ A + torch.diag(penalty))
        self._xty = A.T @ Y
        self._solve()
        return self

    def _solve(self) -> None:
        W = self._inv @ self._xty
        self.coef_ = W[:-1] if self.fit_intercept else W
        self.intercept_ = W[-1] if self.fit_intercept else torch.zeros(W.shape[1], dtype=torch.float64)
        if self._vector:
            self.coef_, self.intercept_ = self.coef_[:, 0], self.intercept_[0]

    def remove(self, indices: Sequence[int] | int) -> "RidgeRemoval":
        """Remove training rows by Sherman–Morrison downdates of (XᵀX + λI)⁻¹ and of Xᵀy."""
        for i in _indices(indices, self.alive):
            a = self.A[i]
            u = self._inv @ a
            self._inv = self._inv + torch.outer(u, u) / (1 - a.dot(u))
            self._xty = self._xty - torch.outer(a, self.Y[i])
            self.alive[i] = False
        self._solve()
        return self

    def predict(self, X: Any) -> torch.Tensor:
        return _matrix(X, "X") @ self.coef_ + self.intercept_


__all__ = ["CertifiedLogistic", "RidgeRemoval", "RemovalState"]
