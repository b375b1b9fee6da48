"""ROC utilities for membership-inference attacks, and the record of one attack (:class:`AttackResult`).

Convention: a score is "higher = member"; an attack predicts "member" when score ≥ threshold.

- ``roc_curve``: one point per distinct score, from (0, 0) (threshold +∞) to (1, 1); tied scores move together,
  as in scikit-learn's ``roc_curve(drop_intermediate=False)``.
- ``roc_auc``: P(member score > non-member score) + ½·P(equal), the Mann–Whitney statistic; equals the area under
  ``roc_curve`` and scikit-learn's ``roc_auc_score``, ties included.
- ``tpr_at_fpr``: the largest TPR among thresholds whose FPR is **at most** the target, no interpolation (an attack
  an adversary could actually run). With n non-members the resolution is 1/n: below it, this is the TPR at zero
  false positives. The LiRA reference's ``plot.py`` uses FPR strictly below the target; here FPR = target counts.
- ``balanced_accuracy``: the best threshold's (TPR + TNR)/2, as LiRA's ``sweep`` reports it (chosen with the
  labels, so optimistic).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .scores import as_bool, as_numpy

log = logging.getLogger(__name__)

LOW_FPRS = (0.01, 0.001)


def _split(member_scores: Any, nonmember_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    m = as_numpy(member_scores, "member_scores").ravel()
    n = as_numpy(nonmember_scores, "nonmember_scores").ravel()
    if len(m) == 0 or len(n) == 0:
        raise ValueError(f"ROC needs at least one member and one non-member score; got {len(m)} members and "
                         f"{len(n)} non-members")
    if np.isnan(m).any() or np.isnan(n).any():
        raise ValueError("attack scores contain NaN")
    return m, n


def roc_curve(member_scores: Any, nonmember_scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): point k predicts "member" for every score ≥ thresholds[k]; thresholds[0] = +∞."""
    m, n = _split(member_scores, nonmember_scores)
    scores = np.concatenate([m, n])
    is_member = np.concatenate([np.ones(len(m), bool), np.zeros(len(n), bool)])
    order = np.argsort(-scores, kind="stable")
    scores, is_member = scores[order], is_member[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(is_member)[last_of_tie]
    fp = np.cumsum(~is_member)[last_of_tie]
    fpr = np.r_[0.0, fp / len(n)]
    tpr = np.r_[0.0, tp / len(m)]
    return fpr, tpr, np.r_[np.inf, scores[last_of_tie]]


def roc_auc(member_scores: Any, nonmember_scores: Any) -> float:
    """Area under the ROC curve: P(member > non-member) + ½ P(tie)."""
    fpr, tpr, _ = roc_curve(member_scores, nonmember_scores)
    return _area(fpr, tpr)


def _area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_numbers(member_scores: Any, nonmember_scores: Any, fprs: tuple[float, ...] = LOW_FPRS
                ) -> tuple[float, list[float]]:
    """AUC and the TPR at each FPR in ``fprs`` from one ROC; a TPR is NaN where the non-members are too few to
    resolve its FPR (fewer than 1 / FPR of them)."""
    fpr, tpr, _ = roc_curve(member_scores, nonmember_scores)
    n = np.asarray(nonmember_scores).size
    return _area(fpr, tpr), [tpr_at_fpr(fpr, tpr, f) if f * n >= 1 - 1e-9 else float("nan") for f in fprs]


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The largest TPR among ROC points with FPR ≤ ``target`` (``fpr``, ``tpr`` as from :func:`roc_curve`)."""
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target FPR must lie in [0, 1]; got {target}")
    fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
    ok = fpr <= target * (1 + 1e-12)  # k/n == target must count despite rounding of the product
    return float(np.max(tpr[ok])) if ok.any() else 0.0


def balanced_accuracy(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """max over thresholds of (TPR + 1 − FPR) / 2."""
    return float(np.max((np.asarray(tpr) + 1.0 - np.asarray(fpr)) / 2))


def downsample_roc(fpr: np.ndarray, tpr: np.ndarray, points: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The ROC step function at ≤ 2·points + 3 FPRs (log-spaced from 1e-5, linear, and 1% and 0.1%), each with
    the best TPR reachable at that FPR or below, so the stored curve never overstates the attack."""
    grid = np.unique(np.r_[0.0, np.logspace(-5, 0, points), np.linspace(0, 1, points), LOW_FPRS, 1.0])
    return grid, np.array([tpr_at_fpr(fpr, tpr, g) for g in grid])


@dataclass
class AttackResult:
    """One membership-inference attack on one target model: per-example scores and the ROC summary."""

    name: str
    scores: np.ndarray              # per example, higher = member
    is_member: np.ndarray           # ground truth used to score the attack
    n_reference: int                # reference (shadow/oracle) models the attack used; 0 for threshold attacks
    auc: float
    balanced_accuracy: float
    tpr_at_1pct: float
    tpr_at_0_1pct: float
    roc_fpr: np.ndarray = field(repr=False)
    roc_tpr: np.ndarray = field(repr=False)

    @classmethod
    def from_scores(cls, name: str, scores: Any, is_member: Any, *, n_reference: int = 0) -> "AttackResult":
        s = as_numpy(scores, "scores").ravel()
        mask = as_bool(is_member, "is_member").ravel()
        if mask.shape != s.shape:
            raise ValueError(f"is_member has {mask.size} entries but there are {s.size} scores")
        fpr, tpr, _ = roc_curve(s[mask], s[~mask])
        n_non = int((~mask).sum())
        for target in LOW_FPRS:
            if target * n_non < 1:
                log.info("%s: %d non-members cannot resolve FPR %g; TPR there is the TPR at zero false positives",
                         name, n_non, target)
        gf, gt = downsample_roc(fpr, tpr)
        return cls(name=name, scores=s, is_member=mask, n_reference=int(n_reference),
                   auc=_area(fpr, tpr),
                   balanced_accuracy=balanced_accuracy(fpr, tpr), tpr_at_1pct=tpr_at_fpr(fpr, tpr, 0.01),
                   tpr_at_0_1pct=tpr_at_fpr(fpr, tpr, 0.001), roc_fpr=gf, roc_tpr=gt)

    @property
    def n_members(self) -> int:
        return int(self.is_member.sum())

    @property
    def n_nonmembers(self) -> int:
        return int((~self.is_member).sum())

    def summary(self, prefix: str | None = None) -> dict[str, float]:
        """Flat floats for a run store: ``{prefix}_auc``, ``_balanced_accuracy``, ``_tpr_at_1pct``,
        ``_tpr_at_0_1pct``, ``_n_reference`` (prefix defaults to the attack's name)."""
        p = self.name if prefix is None else prefix
        return {f"{p}_auc": self.auc, f"{p}_balanced_accuracy": self.balanced_accuracy,
                f"{p}_tpr_at_1pct": self.tpr_at_1pct, f"{p}_tpr_at_0_1pct": self.tpr_at_0_1pct,
                f"{p}_n_reference": float(self.n_reference)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary numbers, the downsampled ROC and the per-example scores as lists."""
        return {"name": self.name, "n_reference": self.n_reference, "n_members": self.n_members,
                "n_nonmembers": self.n_nonmembers, "auc": self.auc, "balanced_accuracy": self.balanced_accuracy,
                "tpr_at_1pct": self.tpr_at_1pct, "tpr_at_0_1pct": self.tpr_at_0_1pct,
                "roc_fpr": self.roc_fpr.tolist(), "roc_tpr": self.roc_tpr.tolist(),
                "scores": self.scores.tolist(), "is_member": self.is_member.tolist()}
