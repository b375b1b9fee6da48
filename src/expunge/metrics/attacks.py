"""Membership-inference attacks on one target model: threshold attacks, LiRA and RMIA (tier-1 evidence).

Every attack returns per-example scores, higher = member; :meth:`AttackResult.from_scores` turns them and the
ground truth into AUC, TPR at 1% / 0.1% FPR and the ROC. Inputs match a batched ensemble: per-example scores of
the target model ``[N]`` (or several targets ``[T, N]``), of K reference models ``[K, N]``, and a boolean IN mask
``[K, N]`` (reference model k trained on example n).

**Threshold attacks** (Yeom et al. 2018; Song & Mittal, USENIX Security 2021): one global threshold on loss,
confidence, entropy or modified entropy of the target model (``threshold_attack``); no reference models.

**LiRA** (Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022; reference
tensorflow/privacy ``research/mi_lira_2021``, ``plot.py``): on the logit-scaled confidence φ, per example fit
N(μ_in, σ_in) to the IN reference models and N(μ_out, σ_out) to the OUT ones; μ is the median (as the reference's
``generate_ours``), σ the standard deviation (ddof 0).

- online: score = log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out), the reference's ``pr_in − pr_out`` with the sign
  flipped to "higher = member";
- offline: the paper's one-sided test against OUT; score = z = (φ − μ_out)/σ_out, which orders examples exactly as
  the paper's Λ = Φ(z) without Φ saturating at 1 (the reference's ``generate_ours_offline`` instead uses the
  two-sided density −log N(φ; μ_out, σ_out));
- ``fix_variance=True``: one global σ_in and one global σ_out for all examples, the pooled within-example standard
  deviations (the paper's intent; the reference code takes the spread of all IN scores, between-example
  differences included, and uses it for OUT as well). Better with few (< 64) reference models.

Examples with fewer than two IN (OUT) models, or zero spread, use the global σ; an example with no IN (OUT) model
takes μ_out + Δ (μ_in − Δ), Δ = mean of μ_in − μ_out over examples that have both (the reference drops all
examples beyond the smallest count instead, so it fails when any example lacks IN or OUT models).

**RMIA** (Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", ICML 2024; reference
privacytrustlab/ml_privacy_meter ``modules/mia/attacks/rmia.py``), offline: on true-class probabilities p_y,
P(x) = ½[(1+a)·P_OUT(x) + (1−a)] with P_OUT the mean over OUT reference models, LR(x, z) = [p(x|θ)/P(x)] /
[p(z|θ)/P(z)], score(x) = fraction of population samples z with LR(x, z) ≥ γ. Default a = 0.3 (the reference's
``offline_a``), tuned over {0, 0.1, …, 1} by ``tune_rmia_a`` (attack one reference model with the others, as the
reference's ``tune_offline_a`` does); γ = 1. Deviations: P_OUT is the mean over all OUT models (the reference keeps
the K/2 largest OUT values, padding with zeros where fewer exist); LR ≥ γ as in the paper (the reference counts
LR > 1). An example with no OUT model inverts the IN mean, P_OUT = (P_IN + a − 1)/a clipped to [0, 1] (a = 0.3
when a = 0), as the reference does for a single reference model. Population samples must be non-members of every
reference model.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .roc import AttackResult, roc_auc
from .scores import as_bool, as_numpy, membership_score

THRESHOLD_SCORES = ("loss", "confidence", "entropy", "modified_entropy")
RMIA_A_GRID = tuple(np.round(np.arange(0, 1.01, 0.1), 1))


def threshold_attack(logits: Any, labels: Any, is_member: Any, *, score: str = "loss") -> AttackResult:
    """A global threshold on one score of the target model (lower loss / entropy / m-entropy = member)."""
    if score not in THRESHOLD_SCORES:
        raise ValueError(f"unknown threshold-attack score {score!r}; allowed: {list(THRESHOLD_SCORES)}")
    return AttackResult.from_scores(f"threshold_{score}", membership_score(score, logits, labels), is_member)


def _reference_inputs(target: Any, reference: Any, reference_in: Any | None, what: str
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, r = as_numpy(target, "target"), as_numpy(reference, "reference")
    if r.ndim != 2 or r.shape[0] < 1:
        raise ValueError(f"reference {what} must have shape [K, N] with K >= 1 models; got {r.shape}")
    if t.ndim not in (1, 2) or t.shape[-1] != r.shape[1]:
        raise ValueError(f"target {what} must have shape [N] or [T, N] with N = {r.shape[1]}; got {t.shape}")
    if not (np.isfinite(t).all() and np.isfinite(r).all()):
        raise ValueError(f"target and reference {what} must be finite")
    if reference_in is None:
        return t, r, np.zeros(r.shape, bool)
    m = as_bool(reference_in, "the IN mask")
    if m.shape != r.shape:
        raise ValueError(f"the IN mask must have shape {r.shape}, like the reference {what}; got {m.shape}")
    return t, r, m


def _group(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per example (column): count, median, std (ddof 0) over the masked rows; and the pooled within-example std."""
    count = mask.sum(0)
    x = np.where(mask, values, np.nan)
    has = count > 0
    med, std = np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
    med[has] = np.nanmedian(x[:, has], axis=0)
    std[has] = np.nanstd(x[:, has], axis=0)
    dof = np.sum(np.maximum(count - 1, 0))
    if dof > 0:
        pooled = float(np.sqrt(np.sum(np.where(has, std ** 2 * count, 0.0)) / dof))
    else:  # every example seen by at most one model: fall back to the spread across examples
        pooled = float(np.std(values[mask])) if mask.any() else np.nan
    return count, med, std, pooled


def _fill_sigma(std: np.ndarray, count: np.ndarray, pooled: float, fixed: bool, which: str) -> np.ndarray:
    if not np.isfinite(pooled) or pooled <= 0:
        raise ValueError(f"cannot estimate the {which} spread: all {which} reference scores are identical or absent")
    if fixed:
        return np.full(std.shape, pooled)
    return np.where((count >= 2) & (std > 0), std, pooled)


def lira(target: Any, shadow: Any, shadow_in: Any, *, online: bool = True, fix_variance: bool = False
         ) -> np.ndarray:
    """LiRA scores (higher = member) of the target model(s) φ ``[N]`` or ``[T, N]``, from shadow φ ``[K, N]`` and
    the shadow IN mask ``[K, N]``. Offline uses only the OUT shadows (see the module docstring)."""
    phi, sh, mask = _reference_inputs(target, shadow, shadow_in, "scores (phi)")
    n_out, mu_out, sd_out, pool_out = _group(sh, ~mask)
    n_in, mu_in, sd_in, pool_in = _group(sh, mask)
    if not (~mask).any():
        raise ValueError("LiRA needs OUT shadow models: every shadow model trained on every example")
    if online and not mask.any():
        raise ValueError("online LiRA needs IN shadow models: the IN mask is all False (use online=False)")
    both = (n_in > 0) & (n_out > 0)
    if both.any():
        shift = float(np.mean(mu_in[both] - mu_out[both]))
    else:
        shift = float(np.median(sh[mask]) - np.median(sh[~mask])) if mask.any() else 0.0
    mu_out = np.where(n_out > 0, mu_out, mu_in - shift)
    s_out = _fill_sigma(sd_out, n_out, pool_out, fix_variance, "OUT")
    if not online:
        return (phi - mu_out) / s_out
    mu_in = np.where(n_in > 0, mu_in, mu_out + shift)
    s_in = _fill_sigma(sd_in, n_in, pool_in, fix_variance, "IN")
    log_in = -0.5 * ((phi - mu_in) / s_in) ** 2 - np.log(s_in)
    log_out = -0.5 * ((phi - mu_out) / s_out) ** 2 - np.log(s_out)
    return log_in - log_out


def _p_x(reference: np.ndarray, member: np.ndarray, a: float) -> np.ndarray:
    """P(x) = ½[(1+a)·P_OUT(x) + (1−a)] per example; P_OUT from OUT models, else inverted from IN models."""
    out = ~member
    n_out = out.sum(0)
    p_out = np.sum(np.where(out, reference, 0.0), 0) / np.maximum(n_out, 1)
    if (n_out == 0).any():
        n_in = member.sum(0)
        p_in = np.sum(np.where(member, reference, 0.0), 0) / np.maximum(n_in, 1)
        inv = a if a > 0 else 0.3  # a = 0 cannot be inverted; the reference uses 0.3 there
        p_out = np.where(n_out > 0, p_out, np.clip((p_in + inv - 1) / inv, 0.0, 1.0))
    return np.maximum(0.5 * ((1 + a) * p_out + (1 - a)), np.finfo(float).tiny)


def rmia(target_x: Any, reference_x: Any, target_z: Any, reference_z: Any, *, reference_in: Any | None = None,
         a: float = 0.3, gamma: float = 1.0) -> np.ndarray:
    """Offline RMIA scores in [0, 1] (higher = member) for the target examples.

    ``target_x`` ``[N]`` (or ``[T, N]``) and ``reference_x`` ``[K, N]``: true-class probabilities p_y of the
    target examples under the target and the K reference models; ``target_z`` ``[M]`` (``[T, M]``) and
    ``reference_z`` ``[K, M]``: the same for population samples. ``reference_in`` ``[K, N]`` marks reference
    models trained on a target example (default: none were)."""
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"a must lie in [0, 1]; got {a}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0; got {gamma}")
    tx, rx, mask = _reference_inputs(target_x, reference_x, reference_in, "probabilities")
    tz, rz, _ = _reference_inputs(target_z, reference_z, None, "population probabilities")
    if rz.shape[0] != rx.shape[0] or tz.ndim != tx.ndim or (tx.ndim == 2 and tz.shape[0] != tx.shape[0]):
        raise ValueError(f"population inputs {tz.shape}, {rz.shape} do not match target inputs {tx.shape}, "
                         f"{rx.shape} (same K reference models and T targets)")
    if min(tx.min(), rx.min(), tz.min(), rz.min()) < 0 or max(tx.max(), rx.max(), tz.max(), rz.max()) > 1:
        raise ValueError("RMIA takes probabilities p_y in [0, 1] (use scores.confidence on logits)")
    with np.errstate(divide="ignore"):
        log_rx = np.log(tx) - np.log(_p_x(rx, mask, a))
        log_rz = np.log(tz) - np.log(_p_x(rz, np.zeros(rz.shape, bool), a))
    log_rz = np.sort(np.atleast_2d(log_rz), axis=-1)
    log_rx2 = np.atleast_2d(log_rx) - np.log(gamma)
    counts = np.stack([np.searchsorted(z, x, side="right") for z, x in zip(log_rz, log_rx2)])
    scores = counts / log_rz.shape[-1]
    return scores.reshape(log_rx.shape)


def tune_rmia_a(reference_x: Any, reference_in: Any, reference_z: Any, *, grid: tuple[float, ...] = RMIA_A_GRID,
                gamma: float = 1.0) -> float:
    """The ``a`` from ``grid`` whose RMIA best attacks reference model 0 using the other reference models (AUC
    against its IN mask); ties go to the smaller ``a``. Needs K >= 2 and model 0 with members and non-members."""
    rx, rz = as_numpy(reference_x, "reference_x"), as_numpy(reference_z, "reference_z")
    mask = as_bool(reference_in, "reference_in")
    if rx.ndim != 2 or rx.shape[0] < 2 or mask.shape != rx.shape:
        raise ValueError(f"tuning a needs >= 2 reference models ([K, N] probabilities and IN mask); got "
                         f"{rx.shape} and mask {mask.shape}")
    truth = mask[0]
    if truth.all() or not truth.any():
        raise ValueError("reference model 0 must have both members and non-members among the examples")
    best, best_auc = grid[0], -1.0
    for a in grid:
        s = rmia(rx[0], rx[1:], rz[0], rz[1:], reference_in=mask[1:], a=float(a), gamma=gamma)
        auc = roc_auc(s[truth], s[~truth])
        if auc > best_auc + 1e-12:
            best, best_auc = float(a), auc
    return best
