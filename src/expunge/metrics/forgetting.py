"""Distributional unlearning scores: many unlearned models against many oracles, per forget example (tier 2).

**Forgetting quality of the NeurIPS 2023 Machine Unlearning Challenge** (Triantafillou et al., "Are we making
progress in unlearning? Findings from the first NeurIPS unlearning competition", 2024; reference
google-deepmind/unlearning_evaluation ``metric.py`` and ``main.py``). For each forget example, take its
logit-scaled confidence φ under N unlearned and N oracle models. The positive class is whichever has the larger
median (the unlearned models on a tie). Two families of attacks:

- single thresholds: "positive if φ ≥ t" for t = linspace(min, max, ⌈100·(max − min)⌉) over both samples
  (step ≈ 0.01);
- intervals: "the narrower distribution (smaller range w; on a tie the non-median-positive one) if l ≤ φ ≤ r", r on
  linspace(n_min + w − 2, n_max + 2, ⌈100·(n_max + 2 − (n_min + w − 2))⌉) (about 400 points around the narrower
  sample's maximum n_max = n_min + w), and for each r, l on linspace(r − w − 2, r − w + 2, 400).

Each threshold gives ε = max(log(1−δ−FPR) − log FNR, log(1−δ−FNR) − log FPR) clipped at 0, δ = 1e-5, a branch with
the log of a non-positive number being ignored; thresholds with exactly one of FPR, FNR zero are dropped, and FPR =
FNR = 0 gives ε = ∞. ε_s is the largest over all kept thresholds, capped at 50; ε_s = 50 outright if the
narrower range is < 1% of the wider one. Per example H(ε) = 2^(−⌊2ε⌋) if ε < ⌈ln(N − 1)⌉, else 0; the forgetting
quality F is the mean of H, and the final score is F × (RA_U / RA_R) × (TA_U / TA_R), accuracies averaged over the
unlearned (U) and oracle (R) models.

Deviations from the reference code: rates and thresholds are float64 (the reference's single thresholds are
float32); an example where every threshold is dropped (both samples one identical constant) gets ε = 0, where the
reference stops with an assertion; with unequal model counts N = min(N_U, N_R) (the reference needs them equal).
Computation: ε depends only on the integer counts (TP, FP), so it is tabulated once and every threshold costs two
binary searches; 1000 examples × 512 + 512 models take seconds on one core.

**KLoM** (Georgiev et al., "Attribute-to-Delete: Machine Unlearning via Datamodel Matching", ICLR 2025; reference
RoyRin/data-unlearning-bench ``src/eval.py``): per example, margins (``scores.margin``) of the unlearned and oracle
models clipped to ±100, 20 equal bins over the joint range (width 1 when all values coincide), empty oracle bins
where the unlearned histogram is positive raised to 1e-5 and the oracle histogram renormalised, KLoM = KL(p_U ‖ q_R).
Deviation: the maximum value falls in the last bin (the reference's ``np.digitize`` leaves it out of both
histograms). Report separately for forget, retain and validation examples (mean and 95th percentile).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .scores import as_numpy

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0
DROPPED = -1.0  # marks a threshold the reference discards


def _pair(unlearned: Any, oracle: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    u, o = as_numpy(unlearned, f"unlearned {what}"), as_numpy(oracle, f"oracle {what}")
    if u.ndim != 2 or o.ndim != 2 or u.shape[1] != o.shape[1]:
        raise ValueError(f"unlearned and oracle {what} must be [models, examples] with the same number of examples; "
                         f"got {u.shape} and {o.shape}")
    if u.shape[0] < 2 or o.shape[0] < 2:
        raise ValueError(f"need at least 2 unlearned and 2 oracle models; got {u.shape[0]} and {o.shape[0]}")
    if not (np.isfinite(u).all() and np.isfinite(o).all()):
        raise ValueError(f"unlearned and oracle {what} must be finite")
    return u, o


def epsilon_table(n_pos: int, n_neg: int, delta: float = DELTA) -> np.ndarray:
    """ε for every (TP, FP) count, shape [n_pos + 1, n_neg + 1]; ∞ for perfect separation, ``DROPPED`` (−1) for
    thresholds the reference discards."""
    tp = np.arange(n_pos + 1)[:, None]
    fp = np.arange(n_neg + 1)[None, :]
    fpr, fnr = fp / n_neg, (n_pos - tp) / n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = np.where(np.isnan(eps), DROPPED, np.maximum(eps, 0.0))
    zero_fp, zero_fn = np.broadcast_arrays(fp == 0, tp == n_pos)
    eps = np.where(zero_fp ^ zero_fn, DROPPED, eps)
    return np.where(zero_fp & zero_fn, np.inf, eps)


def _single(pos: np.ndarray, neg: np.ndarray, table: np.ndarray) -> float:
    lo, hi = min(pos[0], neg[0]), max(pos[-1], neg[-1])
    t = np.linspace(lo, hi, int(np.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    tp = len(pos) - np.searchsorted(pos, t, side="left")
    fp = len(neg) - np.searchsorted(neg, t, side="left")
    return float(np.take(table, tp * table.shape[1] + fp).max(initial=DROPPED))


def _interval(pos: np.ndarray, neg: np.ndarray, width: float, table: np.ndarray) -> float:
    lo, hi = pos[0] + width - BUFFER, pos[-1] + BUFFER
    right = np.linspace(lo, hi, int(np.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    left = np.linspace(right - width - BUFFER, right - width + BUFFER, int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT)),
                       axis=1)
    # one search in the merged sample; cum_*[k] = how many of the k smallest merged values are pos / neg
    merged = np.concatenate([pos, neg])
    order = np.argsort(merged, kind="stable")
    cum_pos = np.r_[0, np.cumsum(order < len(pos))]
    cum_neg = np.arange(len(merged) + 1) - cum_pos
    below_left = np.searchsorted(merged[order], left, side="left")
    tp = np.searchsorted(pos, right, side="right")[:, None] - cum_pos[below_left]
    fp = np.searchsorted(neg, right, side="right")[:, None] - cum_neg[below_left]
    flat = np.maximum(tp, 0) * table.shape[1] + np.maximum(fp, 0)
    return float(np.take(table, flat).max(initial=DROPPED))


def example_epsilons(unlearned: Any, oracle: Any, *, delta: float = DELTA) -> np.ndarray:
    """ε_s per example from φ of the unlearned ``[N_U, S]`` and oracle ``[N_R, S]`` models, in [0, 50]."""
    u, o = _pair(unlearned, oracle, "scores (phi)")
    u, o = np.sort(u.T, axis=1), np.sort(o.T, axis=1)  # [S, models], each row contiguous
    oracle_pos = np.median(o, axis=1) > np.median(u, axis=1)
    tables = {}

    def table(n_pos: int, n_neg: int) -> np.ndarray:
        if (n_pos, n_neg) not in tables:
            tables[n_pos, n_neg] = epsilon_table(n_pos, n_neg, delta)
        return tables[n_pos, n_neg]

    eps = np.empty(u.shape[0])
    for s in range(u.shape[0]):
        pos, neg = (o[s], u[s]) if oracle_pos[s] else (u[s], o[s])
        pos_range, neg_range = pos[-1] - pos[0], neg[-1] - neg[0]
        small, large = min(pos_range, neg_range), max(pos_range, neg_range)
        if large > 0 and small / large < 0.01:
            eps[s] = EPSILON_CAP
            continue
        narrow, wide = (neg, pos) if pos_range >= neg_range else (pos, neg)
        best = max(_single(pos, neg, table(len(pos), len(neg))),
                   _interval(narrow, wide, small, table(len(narrow), len(wide))))
        eps[s] = min(max(best, 0.0), EPSILON_CAP)
    return eps


def h_score(eps: np.ndarray, n_models: int) -> np.ndarray:
    """2^(−⌊2ε⌋) where ε < ⌈ln(n_models − 1)⌉, else 0 (all 0 for n_models ≤ 2)."""
    eps = np.asarray(eps, float)
    limit = np.ceil(np.log(n_models - 1)) if n_models > 1 else -np.inf
    return np.where(eps < limit, 2.0 ** -np.floor(2 * np.minimum(eps, EPSILON_CAP)), 0.0)


@dataclass
class ForgettingQuality:
    """The challenge score: per-example ε and H, F = mean H, and the utility-adjusted final score."""

    epsilons: np.ndarray
    h: np.ndarray
    forget_quality: float
    final: float | None          # None when accuracies were not given
    retain_ratio: float | None   # RA_U / RA_R
    test_ratio: float | None     # TA_U / TA_R
    n_unlearned: int
    n_oracle: int
    n_examples: int

    def summary(self, prefix: str = "challenge") -> dict[str, float]:
        out = {f"{prefix}_forget_quality": self.forget_quality, f"{prefix}_eps_mean": float(self.epsilons.mean()),
               f"{prefix}_n_models": float(min(self.n_unlearned, self.n_oracle))}
        if self.final is not None:
            out[f"{prefix}_final"] = self.final
        return out


def _ratio(unlearned: Any, oracle: Any, what: str) -> float:
    u, r = float(np.mean(as_numpy(unlearned, what))), float(np.mean(as_numpy(oracle, what)))
    if not r > 0:
        raise ValueError(f"mean oracle {what} must be > 0; got {r}")
    return u / r


def forgetting_quality(unlearned: Any, oracle: Any, *, retain_acc: tuple[Any, Any] | None = None,
                       test_acc: tuple[Any, Any] | None = None, delta: float = DELTA) -> ForgettingQuality:
    """The NeurIPS 2023 challenge score from φ of forget examples under unlearned ``[N_U, S]`` and oracle
    ``[N_R, S]`` models. ``retain_acc`` and ``test_acc`` are (unlearned, oracle) accuracies, each a number or
    one per model (averaged); give both for the final score."""
    if (retain_acc is None) != (test_acc is None):
        raise ValueError("give both retain_acc and test_acc (each as (unlearned, oracle)) or neither")
    u, o = _pair(unlearned, oracle, "scores (phi)")
    eps = example_epsilons(u, o, delta=delta)
    h = h_score(eps, min(u.shape[0], o.shape[0]))
    f = float(h.mean()) if len(h) else float("nan")
    ra = ta = final = None
    if retain_acc is not None:
        ra, ta = _ratio(*retain_acc, "retain accuracy"), _ratio(*test_acc, "test accuracy")
        final = f * ra * ta
    return ForgettingQuality(eps, h, f, final, ra, ta, u.shape[0], o.shape[0], u.shape[1])


@dataclass
class KLoMResult:
    """KLoM per example and its summary (mean and a high percentile)."""

    per_example: np.ndarray
    mean: float
    percentile: float            # the ``q``-th percentile of per_example
    q: float
    n_unlearned: int
    n_oracle: int

    def summary(self, prefix: str = "klom") -> dict[str, float]:
        return {f"{prefix}_mean": self.mean, f"{prefix}_p{self.q:g}": self.percentile,
                f"{prefix}_n_models": float(min(self.n_unlearned, self.n_oracle))}


def _bin_counts(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Histogram counts per column of ``x`` over [lo, hi] in ``bins`` equal bins, shape [columns, bins]."""
    step = (hi - lo) / bins
    idx = np.clip(np.floor((x - lo) / step), 0, bins - 1).astype(np.int64)
    # settle values within rounding of an edge as np.linspace edges would: bin k is [lo + k·step, lo + (k+1)·step)
    idx = np.where((idx > 0) & (x < lo + idx * step), idx - 1, idx)
    idx = np.where((idx < bins - 1) & (x >= lo + (idx + 1) * step), idx + 1, idx)
    flat = idx + bins * np.arange(x.shape[1])[None, :]
    return np.bincount(flat.ravel(), minlength=bins * x.shape[1]).reshape(x.shape[1], bins)


def klom(unlearned_margins: Any, oracle_margins: Any, *, bins: int = 20, clip: float = 100.0, eps: float = 1e-5,
         q: float = 95.0) -> KLoMResult:
    """KLoM per example from margins of the unlearned ``[N_U, S]`` and oracle ``[N_R, S]`` models."""
    if bins < 1 or not clip > 0 or not eps > 0:
        raise ValueError(f"bins must be >= 1 and clip, eps > 0; got bins={bins}, clip={clip}, eps={eps}")
    u, o = _pair(unlearned_margins, oracle_margins, "margins")
    u, o = np.clip(u, -clip, clip), np.clip(o, -clip, clip)
    lo = np.minimum(u.min(0), o.min(0))
    hi = np.maximum(u.max(0), o.max(0))
    hi = np.where(lo >= hi, lo + 1.0, hi)
    p = _bin_counts(u, lo, hi, bins) / u.shape[0]
    r = _bin_counts(o, lo, hi, bins) / o.shape[0]
    r = np.where(p > 0, np.maximum(r, eps), r)
    r = r / r.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.sum(np.where(p > 0, p * np.log(p / r), 0.0), axis=1)
    mean = float(kl.mean()) if len(kl) else float("nan")
    pct = float(np.percentile(kl, q)) if len(kl) else float("nan")
    return KLoMResult(kl, mean, pct, q, u.shape[0], o.shape[0])
