"""Scores of image generators as pure functions over judged labels and feature arrays.

- **Generation accuracy** of class k (:func:`generation_accuracy`): the share (percent) of the samples conditioned
  on k that the judge (:mod:`expunge.gen.judge`) assigns to k.
- **Unlearning accuracy** (:func:`unlearning_accuracy`): the share (percent) of the samples conditioned on a
  forgotten class that the judge does *not* assign to that class (SalUn's "UA" for diffusion models, 100 minus
  the forgotten classes' generation accuracy; UnlearnCanvas's unlearning accuracy).
- **Fréchet distance** (:func:`frechet_distance`) between two feature sets, each summarised by its mean μ and
  covariance Σ (unbiased, ``ddof=1``, as FID's reference code computes them with ``np.cov``):
  d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}). Tr((Σ₁Σ₂)^{1/2}) is computed as the sum of the square roots of
  the eigenvalues of the symmetric matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2} (similar to Σ₁Σ₂, so the same eigenvalues), which
  are real and non-negative up to rounding: the small imaginary parts that ``scipy.linalg.sqrtm`` of a
  non-symmetric product can show (and FID's code discards) never arise, and negative rounding is clipped at 0.
  On Inception features this is FID; here the features are the judge's, so it is called a Fréchet distance.
  :func:`frechet_distance_gaussians` is the same formula for given means and covariances (the population value).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch


def _labels(v: Any, what: str) -> np.ndarray:
    a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    if a.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of class labels; got shape {a.shape}")
    return a.astype(np.int64)


def generation_accuracy(judged: Any, conditioned: Any) -> dict[int, float]:
    """Per conditioning class k present in ``conditioned``: the % of its samples whose ``judged`` label is k."""
    j, c = _labels(judged, "judged"), _labels(conditioned, "conditioned")
    if j.shape != c.shape:
        raise ValueError(f"judged has {len(j)} labels but conditioned has {len(c)}; give one of each per sample")
    return {int(k): float(100.0 * np.mean(j[c == k] == k)) for k in np.unique(c)}


def unlearning_accuracy(judged: Any, conditioned: Any, forgotten: Iterable[int]) -> float:
    """% of the samples conditioned on a forgotten class that are not judged as their conditioning class."""
    j, c = _labels(judged, "judged"), _labels(conditioned, "conditioned")
    if j.shape != c.shape:
        raise ValueError(f"judged has {len(j)} labels but conditioned has {len(c)}; give one of each per sample")
    forgotten = [int(k) for k in forgotten]
    rows = np.isin(c, forgotten)
    if not forgotten or not rows.any():
        raise ValueError(f"no sample is conditioned on the forgotten classes {forgotten}")
    return float(100.0 * np.mean(j[rows] != c[rows]))


def mean_and_covariance(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) of ``features`` [N, D] in float64, Σ with ``ddof=1``; ValueError for fewer than 2 rows."""
    f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    f = f.astype(np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"a Fréchet distance needs features shaped [N, D] with N >= 2; got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or Inf")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(features_a: Any, features_b: Any) -> float:
    """The Fréchet distance between the Gaussians fitted to two feature sets [N, D] and [M, D] (module docstring);
    0 for identical sets (up to rounding)."""
    mu_a, cov_a = mean_and_covariance(features_a)
    mu_b, cov_b = mean_and_covariance(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sets differ in width: {mu_a.shape[0]} and {mu_b.shape[0]} dimensions")
    return frechet_distance_gaussians(mu_a, cov_a, mu_b, cov_b)


def frechet_distance_gaussians(mu_a: Any, cov_a: Any, mu_b: Any, cov_b: Any) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}) for symmetric positive semi-definite covariances."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_root = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    d = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)
    return max(d, 0.0)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix (negative rounding in its eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
