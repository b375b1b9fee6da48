"""Per-example scores of a classifier's outputs, the inputs of every membership-inference attack.

Each function takes ``logits`` of shape ``[..., N, C]`` (one model ``[N, C]`` or an ensemble ``[K, N, C]``) as a
numpy array or torch tensor, and integer ``labels`` of shape ``[N]`` (or the full leading shape), and returns a
float64 numpy array of shape ``logits.shape[:-1]``. Everything is computed from log-softmax in float64, so a model
that is confident to within 1e-12 (or beyond) still gives finite values.

- ``loss``: cross-entropy −log p_y.
- ``confidence``: p_y.
- ``entropy``: −Σ_j p_j log p_j (labels are not used).
- ``modified_entropy``: Song & Mittal, "Systematic Evaluation of Privacy Risks of Machine Learning Models",
  USENIX Security 2021: −(1−p_y)·log p_y − Σ_{j≠y} p_j·log(1−p_j). The OPTML ``SVC_MIA.py`` feature of this name
  indexes every label column and uses log p instead of log(1−p); this is the paper's definition.
- ``logit_scaled_confidence``: φ = log p_y − log Σ_{j≠y} p_j (Carlini et al., "Membership Inference Attacks From
  First Principles", IEEE S&P 2022), which equals logit_y − logsumexp_{j≠y} logit_j and is computed that way.
- ``margin``: the KLoM margin logit_y − logsumexp_{j≠y} logit_j (Georgiev et al., ICLR 2025): the same number as φ.

``membership_score(name, ...)`` orients a score so that higher means "member" (lower loss, entropy and
m-entropy mean member; higher confidence and φ mean member).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def as_numpy(x: Any, name: str = "array") -> np.ndarray:
    """A float64 numpy copy of a numpy array, torch tensor or nested sequence."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a numpy array or torch tensor of numbers; got {type(x).__name__}") from err


def as_bool(x: Any, name: str = "mask") -> np.ndarray:
    """A numpy copy of a boolean numpy array or torch tensor (membership masks)."""
    m = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if m.dtype != bool:
        raise TypeError(f"{name} must be a boolean array; got dtype {m.dtype}")
    return m


def _inputs(logits: Any, labels: Any | None) -> tuple[np.ndarray, np.ndarray | None]:
    z = as_numpy(logits, "logits")
    if z.ndim < 2 or z.shape[-1] < 2:
        raise ValueError(f"logits must have shape [..., N, C] with C >= 2 classes; got shape {z.shape}")
    if np.isnan(z).any() or np.isposinf(z).any():
        raise ValueError("logits contain NaN or +inf; only finite values (or -inf for an impossible class) are allowed")
    if labels is None:
        return z, None
    y = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers; got dtype {y.dtype}")
    try:
        y = np.broadcast_to(y, z.shape[:-1])
    except ValueError as err:
        raise ValueError(f"labels of shape {y.shape} do not match logits of shape {z.shape} "
                         f"(labels must be [N] or {z.shape[:-1]})") from err
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"labels must lie in [0, {z.shape[-1] - 1}]; got values in [{y.min()}, {y.max()}]")
    return z, y


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return (m + np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True)))[..., 0]


def _true_and_rest(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logit_y, logsumexp over the other classes)."""
    onehot = np.arange(z.shape[-1]) == y[..., None]
    return np.sum(np.where(onehot, z, 0.0), axis=-1), _logsumexp(np.where(onehot, -np.inf, z))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    return z - _logsumexp(z)[..., None]


def _log1m_softmax(z: np.ndarray) -> np.ndarray:
    """log(1 − p_j) for every class j, accurate also where p_j is within 1e-12 of 1."""
    logp = _log_softmax(z)
    with np.errstate(divide="ignore"):
        out = np.log1p(-np.exp(logp))
    # only the largest class can have p_j > 1/2; there use log Σ_{i≠j} p_i, computed from logits
    top = np.argmax(z, axis=-1)
    _, rest = _true_and_rest(z, top)
    exact = rest - _logsumexp(z)
    np.put_along_axis(out, top[..., None], exact[..., None], axis=-1)
    return out


def loss(logits: Any, labels: Any) -> np.ndarray:
    """Cross-entropy −log p_y per example."""
    z, y = _inputs(logits, labels)
    true, _ = _true_and_rest(z, y)
    return _logsumexp(z) - true


def confidence(logits: Any, labels: Any) -> np.ndarray:
    """p_y, the softmax probability of the true class."""
    return np.exp(-loss(logits, labels))


def entropy(logits: Any, labels: Any | None = None) -> np.ndarray:
    """Shannon entropy −Σ_j p_j log p_j of the softmax (nats); ``labels`` are accepted and ignored."""
    z, _ = _inputs(logits, None)
    logp = _log_softmax(z)
    p = np.exp(logp)
    return -np.sum(np.where(p > 0, p * logp, 0.0), axis=-1)


def modified_entropy(logits: Any, labels: Any) -> np.ndarray:
    """Song & Mittal's m-entropy: −(1−p_y)·log p_y − Σ_{j≠y} p_j·log(1−p_j)."""
    z, y = _inputs(logits, labels)
    logp = _log_softmax(z)
    log1m = _log1m_softmax(z)
    onehot = np.arange(z.shape[-1]) == y[..., None]
    logp_y = np.sum(np.where(onehot, logp, 0.0), axis=-1)
    log1m_y = np.sum(np.where(onehot, log1m, 0.0), axis=-1)
    p = np.exp(logp)
    others = np.sum(np.where(onehot | (p == 0), 0.0, p * log1m), axis=-1)
    return -np.exp(log1m_y) * logp_y - others


def logit_scaled_confidence(logits: Any, labels: Any) -> np.ndarray:
    """φ = log p_y − log Σ_{j≠y} p_j, computed as logit_y − logsumexp_{j≠y} logit_j (no rounding to 0 or 1)."""
    z, y = _inputs(logits, labels)
    true, rest = _true_and_rest(z, y)
    return true - rest


def margin(logits: Any, labels: Any) -> np.ndarray:
    """The KLoM margin logit_y − logsumexp_{j≠y} logit_j; identical to :func:`logit_scaled_confidence`."""
    return logit_scaled_confidence(logits, labels)


# name -> (score function, sign that makes "higher = member")
SCORES: dict[str, tuple[Callable[[Any, Any], np.ndarray], float]] = {
    "loss": (loss, -1.0),
    "confidence": (confidence, 1.0),
    "entropy": (entropy, -1.0),
    "modified_entropy": (modified_entropy, -1.0),
    "logit_scaled_confidence": (logit_scaled_confidence, 1.0),
}


def membership_score(name: str, logits: Any, labels: Any) -> np.ndarray:
    """The score ``name`` oriented so that a higher value means "more likely a training member"."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; known scores: {sorted(SCORES)}")
    fn, sign = SCORES[name]
    return sign * fn(logits, labels)
